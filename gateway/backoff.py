"""Retry delays: exponential backoff with a cap and jitter, as a pure function."""

from __future__ import annotations


def retry_delay(attempt: int, initial: float, maximum: float, jitter: float = 0.0) -> float:
    """Seconds to wait before retry number `attempt` (1 for the first retry).

    The delay doubles each time from `initial` up to `maximum`. `jitter` in [0, 1)
    is a random draw supplied by the caller; it shortens the delay by up to 20 %
    so that jobs failing together do not all come back at the same instant.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    base = min(maximum, initial * 2.0 ** min(attempt - 1, 62))
    return base * (1.0 - 0.2 * jitter)
