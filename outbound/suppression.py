"""Addresses not to send to: hard bounces (every mail) and opt-outs (reminders and follow-ups)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from gateway.keys import Keys
from gateway.notification_kinds import CATALOGUE
from gateway.round_trip import ReplyReader

Reason = Literal["hard_bounce", "unsubscribe", "complaint", "manual"]


@dataclass(frozen=True, slots=True)
class Suppression:
    """Why an address is not sent to, and since when."""

    address: str
    reason: Reason
    detail: str
    at: str
    account: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Suppression:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)


def normalise(address: str) -> str:
    """Addresses compare case-insensitively: mailbox providers treat them so."""
    return address.strip().lower()


def blocks(kind: str, hard: Suppression | None, opt_out: Suppression | None) -> Suppression | None:
    """The suppression that stops a notification of `kind`, if any."""
    if hard is not None:
        return hard
    rules = CATALOGUE.get(kind)
    if opt_out is not None and rules is not None and rules.stopped_by_opt_out:
        return opt_out
    return None


class SuppressionList:
    """Hard bounces are kept for all accounts (the mailbox is gone); opt-outs per
    account (a client leaves one business's reminders, not every business's)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def _key(self, account: str | None) -> str:
        return self.keys.suppressed if account is None else self.keys.opted_out(account)

    async def add(self, entry: Suppression) -> None:
        """Keep `entry`: a hard bounce for every account (the account it came from is
        kept for the record); an unsubscribe or complaint, or a manual entry naming an
        account, in that account's opt-outs."""
        scope = entry.account
        if entry.reason == "hard_bounce" or (entry.reason == "manual" and not entry.account):
            scope = None
        await self.redis.hset(self._key(scope), normalise(entry.address), entry.to_json())

    async def remove(self, address: str, account: str | None = None) -> bool:
        return bool(await self.redis.hdel(self._key(account), normalise(address)))

    async def check(self, kind: str, address: str, account: str) -> Suppression | None:
        """What stops `kind` from being sent to `address` for `account`, if anything."""
        async with self.redis.pipeline(transaction=False) as pipe:
            blocking = self.lookup(pipe, kind, address, account)
            return blocking(await pipe.execute())

    def lookup(
        self, pipe: Pipeline, kind: str, address: str, account: str
    ) -> ReplyReader[Suppression | None]:
        """Queue what `check` reads, on a round trip shared with other stores."""
        address = normalise(address)
        at = len(pipe)
        pipe.hget(self.keys.suppressed, address)
        pipe.hget(self.keys.opted_out(account), address)

        def blocking(replies: Sequence[Any]) -> Suppression | None:
            hard, opt_out = replies[at], replies[at + 1]
            return blocks(
                kind,
                Suppression.from_json(hard) if hard else None,
                Suppression.from_json(opt_out) if opt_out else None,
            )

        return blocking

    async def entries(self, account: str | None = None) -> list[Suppression]:
        stored: Any = await self.redis.hgetall(self._key(account))
        return sorted((Suppression.from_json(v) for v in stored.values()), key=lambda s: s.address)
