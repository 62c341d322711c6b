"""A number's waiting text messages dropped when it opts out, each drop in its history."""

from __future__ import annotations

from collections.abc import Collection

from redis.asyncio import Redis

from gateway.batching import ScriptBatcher
from gateway.history import record_dropped
from gateway.keys import Keys
from gateway.notifications import parse_entries
from gateway.scripts import DROP_TEXTS


async def drop_waiting_texts(
    redis: Redis,
    batcher: ScriptBatcher,
    keys: Keys,
    number: str,
    appointments: Collection[str],
    at: str,
    history_ttl: int,
) -> int:
    """Drop the texts to `number` still waiting in these appointments' plans; returns how
    many were. Those already made into jobs (or moved since) are stopped when sent: the
    opt-out list is checked then."""
    ordered = sorted(appointments)
    lost = await batcher.run(
        DROP_TEXTS,
        keys=[keys.notifications, keys.waiting_count],
        args=[keys.appointment_data_prefix, number, *ordered],
    )
    dropped = 0
    for appointment, entries in zip(ordered, lost, strict=True):
        notifications = [waiting.fields() for waiting in parse_entries(entries)]
        if not notifications:
            continue
        dropped += len(notifications)
        await record_dropped(
            redis, keys, appointment, f"opt-out of {number}", notifications, at, history_ttl
        )
    return dropped
