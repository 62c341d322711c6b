"""How many jobs stand where on the queue, read in one round trip (and a second one when
jobs are on the stream): light, for `mailgw queue` as well as the daemon."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway.keys import Keys


@dataclass(frozen=True, slots=True)
class Depths:
    """How many jobs stand where, for `mailgw queue` and metrics."""

    ready: int
    in_flight: int
    scheduled: int
    retrying: int
    dead_letters: int


async def read_depths(redis: Redis, keys: Keys, group: str) -> Depths:
    """The depths of the queue under `keys`, whose workers read as consumer group `group`."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xlen(keys.jobs)
        pipe.zcard(keys.scheduled)
        pipe.get(keys.waiting_count)
        pipe.zcard(keys.retry)
        pipe.xlen(keys.dead)
        on_stream, scheduled, notifications, retrying, dead = await pipe.execute()
    in_flight = 0
    if on_stream:
        try:
            summary = await redis.xpending(keys.jobs, group)
            in_flight = int(summary["pending"])
        except ResponseError:
            # No group yet: no worker has read, so nothing is in flight.
            in_flight = 0
    return Depths(
        ready=int(on_stream) - in_flight,
        in_flight=in_flight,
        scheduled=int(scheduled) + int(notifications or 0),
        retrying=int(retrying),
        dead_letters=int(dead),
    )
