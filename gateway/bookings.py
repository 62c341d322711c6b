"""A client's appointments with one account (Keys.bookings), kept by the planner's script."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio.client import Pipeline

from gateway.keys import Keys
from gateway.round_trip import ReplyReader


def booked_from(
    pipe: Pipeline, keys: Keys, account: str, address: str, start: float
) -> ReplyReader[set[str]]:
    """Queue reading the ids of the client's appointments starting at `start` (epoch s)
    or later."""
    at = len(pipe)
    pipe.zrangebyscore(keys.bookings(account, address), start, "+inf")

    def appointments(replies: Sequence[Any]) -> set[str]:
        return set(replies[at])

    return appointments
