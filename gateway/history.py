"""An appointment's history (Keys.history): what became of each of its notifications."""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from gateway.keys import Keys


async def record_dropped(
    redis: Redis,
    keys: Keys,
    appointment: str,
    source: str,
    notifications: list[dict[str, Any]],
    at: str,
    ttl: int,
) -> None:
    """Write in the appointment's history that these notifications will not be sent."""
    entry = {
        "at": at,
        "source": source,
        "appointment": appointment,
        "status": "dropped",
        "notifications": notifications,
    }
    key = keys.history(appointment)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xadd(key, {"event": json.dumps(entry, ensure_ascii=False)})
        pipe.expire(key, ttl)
        await pipe.execute()


async def read_history(redis: Redis, keys: Keys, appointment: str) -> list[dict[str, Any]]:
    """Every entry of the appointment's history, oldest first, with its stream entry id."""
    entries: Any = await redis.xrange(keys.history(appointment))
    return [{"entry": entry_id, **json.loads(fields["event"])} for entry_id, fields in entries]
