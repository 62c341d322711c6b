"""How long a text a provider throttled waits: its Retry-After, within the queue's bounds (pure)."""

from __future__ import annotations

import math

from gateway.backoff import retry_delay


def bounded_retry_after(
    asked: float | None, attempt: int, initial: float, maximum: float
) -> float | None:
    """The wait before retrying after attempt `attempt` failed, when the provider asked for
    `asked` seconds: None (the queue's own backoff) when it asked nothing, or no more than
    that backoff (0, a negative, a time gone by: a provider cannot make a text retry
    sooner than any other job, nor at every scheduler tick); else `asked`, at most
    `maximum` (queue.backoff_max: an hour with the defaults, however far off it said)."""
    if asked is None or math.isnan(asked):  # "Retry-After: nan" parses, and says nothing
        return None
    if asked <= retry_delay(attempt, initial, maximum):
        return None
    return min(asked, maximum)
