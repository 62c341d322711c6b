"""The marks of e-mails a run began sending and has not settled (Keys.in_flight)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from gateway.keys import Keys
from gateway.round_trip import ReplyReader

# Written after the token once a send has begun again after an interrupted one.
_AGAIN = "again"


@dataclass(frozen=True, slots=True)
class Mark:
    """The token of the first send begun to a recipient, and whether another one began
    after it was interrupted."""

    token: str
    again: bool


class InFlightMarks:
    """A job's recipients, each to the token of the message being sent to them: the run
    after one that died, hung or timed out knows a message may be out already, and
    sends it again only with the same Message-ID."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def begin(
        self, pipe: Pipeline, job_id: str, recipient: str, token: str, ttl_seconds: int
    ) -> ReplyReader[Mark]:
        """Queue marking a send of `token` begun, unless one was begun already (an earlier
        run was interrupted): the mark read back is that earlier one's then."""
        key = self.keys.in_flight(job_id)
        at = len(pipe)
        pipe.hsetnx(key, recipient, token)
        pipe.hget(key, recipient)
        pipe.expire(key, ttl_seconds)

        def mark(replies: Sequence[Any]) -> Mark:
            begun, _, again = replies[at + 1].partition(" ")
            return Mark(begun, again == _AGAIN)

        return mark

    async def begun_again(self, job_id: str, recipient: str, token: str) -> None:
        """Note that a second send of `token` has begun, for the run after this one,
        should it stop before recording it."""
        await self.redis.hset(self.keys.in_flight(job_id), recipient, f"{token} {_AGAIN}")

    async def settle(self, job_id: str, recipient: str) -> None:
        """Nothing is out to `recipient` any more: the next run has no copy to fear."""
        await self.redis.hdel(self.keys.in_flight(job_id), recipient)
