"""Redis out of reach: told once per outage, waited out with backoff by every part of a
process, and told again when it is back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway import systemd
from gateway.backoff import retry_delay

log = logging.getLogger(__name__)

T = TypeVar("T")

# Replies of a server that is up but cannot serve yet: loading its data after a restart,
# a replica promoted or not yet, a cluster re-forming. All pass with time.
_NOT_YET = ("LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN")
FIRST_DELAY = 0.25
MAX_DELAY = 10.0


def is_outage(exc: BaseException) -> bool:
    """True if `exc` says Redis cannot be reached or cannot serve now, rather than that
    a command was wrong. (Python's own TimeoutError, an OSError, is a deadline of the
    gateway's: redis-py raises its TimeoutError for Redis's.)"""
    if isinstance(exc, TimeoutError):
        return False
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(_NOT_YET)


def lost_group(exc: BaseException) -> bool:
    """True if `exc` says a consumer group is gone: Redis came back without its data."""
    return isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP")


def backoff(failures: int, jitter: Callable[[], float] = random.random) -> float:
    """Seconds to wait after `failures` failures in a row (from 1): 0.25 s doubling up to 10 s."""
    return retry_delay(max(1, failures), FIRST_DELAY, MAX_DELAY, jitter())


class Outage:
    """Whether Redis is out of reach, as the parts of one process find it. The first
    part to fail says so (in the log and in systemd's STATUS); the first to succeed
    after says it is back and how long it was away."""

    def __init__(self, timer: Callable[[], float] = time.monotonic) -> None:
        self.timer = timer
        self.since: float | None = None
        self.cause = ""

    def failed(self, part: str, exc: BaseException) -> None:
        if self.since is not None:
            log.debug("%s: Redis still out of reach: %s", part, exc)
            return
        self.since = self.timer()
        self.cause = f"{type(exc).__name__}: {exc}"
        log.error("Redis is out of reach (%s, seen by %s); retrying with backoff", self.cause, part)
        systemd.notify(f"STATUS={self.status()}")

    def step_failed(self, part: str, doing: str, exc: Exception) -> bool:
        """Say why a step of `part`'s loop failed: Redis out of reach (once, see failed),
        a consumer group lost with Redis's data, or anything else with its traceback.
        True when the group is lost and must be made again."""
        if is_outage(exc):
            self.failed(part, exc)
            return False
        if lost_group(exc):
            log.warning("%s: the consumer group is gone (Redis lost its data?)", part)
            return True
        log.error("%s: cannot %s; trying again", part, doing, exc_info=exc)
        return False

    def ended(self) -> None:
        if self.since is None:
            return
        away = self.timer() - self.since
        self.since = None
        log.warning("Redis is back after %.1fs; resuming", away)
        systemd.notify("STATUS=Redis is back; resuming")

    def status(self) -> str:
        """One line for systemd's STATUS while Redis is away, else ''."""
        if self.since is None:
            return ""
        return f"Redis out of reach for {self.timer() - self.since:.0f}s ({self.cause}); retrying"

    async def wait(self, failures: int, stopping: asyncio.Event | None = None) -> None:
        """Sleep the backoff after `failures` failures in a row, or until `stopping` is set."""
        delay = backoff(failures)
        if stopping is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)

    async def retried(
        self, part: str, step: Callable[[], Awaitable[T]], deadline: float | None = None
    ) -> T:
        """`step`'s result, run again each time Redis is out of reach, until the loop's
        time passes `deadline` (then the last error is raised). For steps safe to repeat:
        a write that records what has happened (a message the relay took), a script that
        changes nothing the second time."""
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            try:
                result = await step()
            except Exception as exc:
                if not is_outage(exc) or (deadline is not None and loop.time() >= deadline):
                    raise
                failures += 1
                self.failed(part, exc)
                await self.wait(failures)
                continue
            if failures:
                self.ended()
            return result


# The parts of one process share one (a part may be given its own, as tests do).
PROCESS = Outage()
