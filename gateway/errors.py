"""Exceptions that carry their meaning: what is wrong, where, and whether to retry."""

from __future__ import annotations

from dataclasses import dataclass


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
    """Retry later with backoff (a 4xx, a timeout, an unreachable provider)."""

    temporary = True


class PermanentFailure(JobFailure):
    """Never retry: the job goes to dead letters with this reason."""

    temporary = False
