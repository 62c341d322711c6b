"""Which recipients of a job are settled (Keys.delivered), so that its retries skip them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from gateway.keys import Keys
from gateway.round_trip import ReplyReader


class DeliveredRecipients:
    """A job's settled recipients, each to the Message-ID sent or the final status."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def settled(self, job_id: str) -> set[str]:
        found: Any = await self.redis.hkeys(self.keys.delivered(job_id))
        return set(found)

    def lookup(self, pipe: Pipeline, job_id: str, recipient: str) -> ReplyReader[str | None]:
        """Queue reading what `recipient` of the job was settled with, if it was."""
        at = len(pipe)
        pipe.hget(self.keys.delivered(job_id), recipient)
        return lambda replies: replies[at]

    async def record(self, job_id: str, outcomes: Mapping[str, str], ttl_seconds: int) -> None:
        """Keep `outcomes` (recipient to Message-ID or status) while the job may come back."""
        key = self.keys.delivered(job_id)
        mapping: Any = dict(outcomes)  # redis-py wants a Mapping of its own key union
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=mapping)
            pipe.expire(key, ttl_seconds)
            await pipe.execute()
