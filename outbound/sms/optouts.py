"""Numbers that answered STOP: they get no text at all, and what waits to text them is dropped."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from gateway.batching import ScriptBatcher
from gateway.clock import Clock, rfc3339
from gateway.keys import Keys
from gateway.waiting_texts import drop_waiting_texts


class SmsOptOuts:
    """The opt-out list of text messages, kept for all accounts: a STOP answers the
    gateway's number, which every account's texts come from."""

    def __init__(
        self, redis: Redis, keys: Keys, clock: Clock, history_ttl: Callable[[], int]
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.history_ttl = history_ttl
        self._batcher = ScriptBatcher(redis)

    async def opt_out(self, number: str, detail: str, account: str | None = None) -> int:
        """Stop texting `number`; returns how many waiting texts were dropped."""
        at = rfc3339(self.clock.now())
        entry = json.dumps({"number": number, "detail": detail, "at": at, "account": account})
        waiting_key = self.keys.sms_waiting(number)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.sms_opted_out, number, entry)
            pipe.smembers(waiting_key)
            pipe.delete(waiting_key)
            _, waiting, _ = await pipe.execute()
        if not waiting:
            return 0
        return await drop_waiting_texts(
            self.redis, self._batcher, self.keys, number, waiting, at, self.history_ttl()
        )

    async def opt_in(self, number: str) -> bool:
        """Text `number` again; False if it had not opted out."""
        return bool(await self.redis.hdel(self.keys.sms_opted_out, number))

    async def entries(self) -> dict[str, dict[str, Any]]:
        """Every opted-out number with why and since when."""
        stored: Any = await self.redis.hgetall(self.keys.sms_opted_out)
        return {number: json.loads(entry) for number, entry in sorted(stored.items())}
