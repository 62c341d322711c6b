"""The clock every rule and the queue are given, so tests can set the time."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time in seconds since the epoch."""

    def now(self) -> float: ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> float:
        return time.time()


def rfc3339(epoch: float) -> str:
    """Format an epoch time as RFC 3339 UTC with milliseconds, as events carry it."""
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def epoch_of(text: str) -> float:
    """The epoch time of an RFC 3339 / ISO 8601 date-time (UTC when it names no offset);
    ValueError when it is not one."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
