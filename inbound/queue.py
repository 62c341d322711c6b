"""Messages the SMTP server accepted, kept in a Redis stream until a worker has routed them."""

from __future__ import annotations

import base64
import json
from dataclasses import fields
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway.keys import Keys
from inbound.received import ReceivedMessage

GROUP = "routers"
_META = [f for f in fields(ReceivedMessage) if f.name != "data"]


class InboundQueue:
    """A stream and its consumer group: stored before the 250, acknowledged once routed,
    taken over from a dead worker after `idle_ms`."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def store(self, message: ReceivedMessage) -> None:
        # every field but the bytes (not asdict(), which copies each value deeply)
        meta = {f.name: getattr(message, f.name) for f in _META}
        # Base64: the gateway's Redis connections decode replies as UTF-8 text.
        entry: Any = {
            "meta": json.dumps(meta),
            "data": base64.b64encode(message.data).decode(),
        }
        await self.redis.xadd(self.keys.inbound, entry)

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.keys.inbound, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(
        self, consumer: str, count: int, block_ms: int
    ) -> list[tuple[str, ReceivedMessage | None, int]]:
        """New entries for `consumer`: (entry id, message, times delivered)."""
        reply: Any = await self.redis.xreadgroup(
            GROUP, consumer, {self.keys.inbound: ">"}, count=count, block=block_ms
        )
        if not reply:
            return []
        return [(entry, _message(fields), 1) for entry, fields in reply[0][1]]

    async def reclaim(
        self, consumer: str, idle_ms: int, count: int
    ) -> list[tuple[str, ReceivedMessage | None, int]]:
        """Entries another consumer took and left unacknowledged for `idle_ms` (it died, or
        the message waits for a retry), with how many times each was delivered."""
        pending: Any = await self.redis.xpending_range(
            self.keys.inbound, GROUP, "-", "+", count, idle=idle_ms
        )
        if not pending:
            return []
        times = {p["message_id"]: int(p["times_delivered"]) + 1 for p in pending}
        claimed: Any = await self.redis.xclaim(
            self.keys.inbound, GROUP, consumer, idle_ms, list(times)
        )
        return [(entry, _message(fields), times[entry]) for entry, fields in claimed if fields]

    async def done(self, entry: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xack(self.keys.inbound, GROUP, entry)
            pipe.xdel(self.keys.inbound, entry)
            await pipe.execute()


def _message(fields: dict[str, str]) -> ReceivedMessage | None:
    """The stored message, or None for an entry that is not one."""
    try:
        meta = json.loads(fields["meta"])
        meta["rcpt_to"] = tuple(meta["rcpt_to"])
        return ReceivedMessage(**meta, data=base64.b64decode(fields["data"], validate=True))
    except (KeyError, TypeError, ValueError, RecursionError):
        return None
