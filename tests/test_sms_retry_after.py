"""The wait a provider's Retry-After gives a text: within the queue's backoff and its maximum."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from gateway.backoff import retry_delay
from outbound.sms.retry_after import bounded_retry_after

INITIAL, MAXIMUM = 30.0, 3600.0


def test_examples() -> None:
    assert bounded_retry_after(None, 1, INITIAL, MAXIMUM) is None
    # 0, negative, or no longer than the backoff: the queue's backoff (and its jitter)
    assert bounded_retry_after(0.0, 1, INITIAL, MAXIMUM) is None
    assert bounded_retry_after(-5.0, 1, INITIAL, MAXIMUM) is None
    assert bounded_retry_after(30.0, 1, INITIAL, MAXIMUM) is None
    assert bounded_retry_after(math.nan, 1, INITIAL, MAXIMUM) is None
    # longer: as asked, up to the maximum
    assert bounded_retry_after(31.0, 1, INITIAL, MAXIMUM) == 31.0
    assert bounded_retry_after(100.0, 3, INITIAL, MAXIMUM) is None  # the 3rd backoff is 120 s
    assert bounded_retry_after(1e9, 1, INITIAL, MAXIMUM) == MAXIMUM
    assert bounded_retry_after(math.inf, 1, INITIAL, MAXIMUM) == MAXIMUM


@given(
    asked=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    attempt=st.integers(min_value=1, max_value=100),
)
def test_never_sooner_than_the_backoff_nor_later_than_the_maximum(
    asked: float | None, attempt: int
) -> None:
    wait = bounded_retry_after(asked, attempt, INITIAL, MAXIMUM)
    if wait is not None:
        assert retry_delay(attempt, INITIAL, MAXIMUM) <= wait <= MAXIMUM
        assert asked is not None and wait == min(asked, MAXIMUM)
