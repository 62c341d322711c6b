"""Exceptions that carry their meaning: what is wrong, where, and whether to retry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.events import Event


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong in one configuration file, at one key."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.key}: {self.message}"


class ConfigError(GatewayError):
    """A configuration that was refused; holds every problem found, not just the first."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class MalformedJob(GatewayError):
    """A queue entry that can never be processed: it goes to dead letters at once."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class JobFailure(GatewayError):
    """A job that could not be done this time; `temporary` says whether to retry it."""

    temporary: bool = True

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class TemporaryFailure(JobFailure):
    """Retry later (a 4xx, a timeout, an unreachable provider).

    `retry_after` (seconds) replaces the queue's backoff when the failing part has
    its own schedule (a provider's Retry-After, the relay's Postfix-like schedule);
    `events` are outcomes already reached (a message sent to some recipients) that are
    recorded with the retry. A schedule that runs past queue.max_attempts (the relay's)
    gives the time it ends, `give_up_at` (epoch seconds), which then bounds it instead.
    """

    temporary = True

    def __init__(
        self,
        reason: str,
        retry_after: float | None = None,
        events: Sequence[Event] = (),
        give_up_at: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.events = tuple(events)
        self.give_up_at = give_up_at


class PermanentFailure(JobFailure):
    """Never retry: the job goes to dead letters with this reason."""

    temporary = False
