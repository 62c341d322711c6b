"""Addresses not to send to: bounces about the address (every mail, until the entry
expires), opt-outs (reminders and follow-ups) and entries made by hand."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import timedelta
from typing import Any, Final, Literal, get_args

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from gateway.bounce_classes import BounceClass
from gateway.clock import Clock, SystemClock, epoch_of, rfc3339
from gateway.keys import Keys
from gateway.notification_kinds import CATALOGUE
from gateway.round_trip import ReplyReader

Reason = Literal["hard_bounce", "unsubscribe", "complaint", "manual"]
REASONS: Final[tuple[Reason, ...]] = get_args(Reason)


@dataclass(frozen=True, slots=True)
class Suppression:
    """Why an address is not sent to, since when, how often, and until when."""

    address: str
    reason: Reason
    detail: str
    """The reply or report that suppressed it (the latest), or an administrator's note."""
    first_seen: str
    account: str | None = None
    bounce_class: BounceClass | None = None
    """None: an entry made by hand, an opt-out, or one kept by 0.1, which had no classes."""
    last_seen: str | None = None
    """None: seen once, at first_seen."""
    count: int = 1
    expires_at: str | None = None
    """None: kept until an administrator removes it."""

    @property
    def seen_last(self) -> str:
        return self.last_seen or self.first_seen

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and epoch_of(self.expires_at) <= now

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Suppression:
        data: dict[str, Any] = json.loads(text)
        if "at" in data:
            # Written by 0.1: no class, no count, no expiry; "at" was when it was first seen.
            data["first_seen"] = data.pop("at")
        return cls(**data)


SUPPRESSION_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in fields(Suppression))


def normalise(address: str) -> str:
    """Addresses compare case-insensitively: mailbox providers treat them so."""
    return address.strip().lower()


def bounce(
    address: str,
    bounce_class: BounceClass,
    detail: str,
    account: str | None,
    now: float,
    lasts: timedelta | None,
) -> Suppression:
    """The entry of a refusal about the address, kept `lasts` (None: until removed)."""
    expires = rfc3339(now + lasts.total_seconds()) if lasts is not None else None
    return Suppression(
        address, "hard_bounce", detail, rfc3339(now), account, bounce_class, expires_at=expires
    )


def _later(one: str | None, other: str | None) -> str | None:
    if one is None or other is None:
        return None
    return one if epoch_of(one) >= epoch_of(other) else other


def merged(existing: Suppression | None, new: Suppression) -> Suppression:
    """`new` seen again for an address `existing` already suppresses: first seen and the
    count carry on, the latest reply and class are kept, and the entry never gets shorter.
    An expired entry is started afresh."""
    if existing is None or existing.expired(epoch_of(new.seen_last)):
        return new
    return replace(
        new,
        first_seen=existing.first_seen,
        last_seen=new.seen_last,
        count=existing.count + new.count,
        expires_at=_later(existing.expires_at, new.expires_at),
    )


def blocks(kind: str, hard: Suppression | None, opt_out: Suppression | None) -> Suppression | None:
    """The suppression that stops a notification of `kind`, if any."""
    if hard is not None:
        return hard
    rules = CATALOGUE.get(kind)
    if opt_out is not None and rules is not None and rules.stopped_by_opt_out:
        return opt_out
    return None


class SuppressionList:
    """Bounces about the address are kept for all accounts (the mailbox is gone);
    opt-outs per account (a client leaves one business's reminders, not every
    business's). An expired entry blocks nothing and is dropped when listed."""

    def __init__(self, redis: Redis, keys: Keys, clock: Clock | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock or SystemClock()

    def _key(self, account: str | None) -> str:
        return self.keys.suppressed if account is None else self.keys.opted_out(account)

    def scope(self, entry: Suppression) -> str | None:
        """The account whose opt-outs keep `entry`, or None for the list of every account:
        a hard bounce, or a manual entry naming no account (the account a bounce came
        from is kept for the record)."""
        if entry.reason == "hard_bounce" or (entry.reason == "manual" and not entry.account):
            return None
        return entry.account

    async def add(self, entry: Suppression) -> Suppression:
        """Keep `entry`, merged with the one already kept for that address (see `merged`);
        the entry kept is returned."""
        key, field = self._key(self.scope(entry)), normalise(entry.address)
        stored: Any = await self.redis.hget(key, field)
        # Read, then written: two bounces of one address at the same moment may count
        # once, which the count (a figure for the administrator) can bear; a transaction
        # would not run on a Redis Cluster's asyncio client.
        kept = merged(Suppression.from_json(stored) if stored else None, entry)
        await self.redis.hset(key, field, kept.to_json())
        return kept

    async def put(self, entries: Iterable[Suppression]) -> int:
        """Keep `entries` as they are, replacing what was kept for their addresses (an
        import); how many were written."""
        written = 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.hset(self._key(self.scope(entry)), normalise(entry.address), entry.to_json())
                written += 1
            await pipe.execute()
        return written

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
            now = self.clock.now()
            hard, opt_out = (self._live(replies[at + n], now) for n in (0, 1))
            return blocks(kind, hard, opt_out)

        return blocking

    @staticmethod
    def _live(stored: str | None, now: float) -> Suppression | None:
        entry = Suppression.from_json(stored) if stored else None
        return None if entry is None or entry.expired(now) else entry

    async def find(self, address: str, accounts: Iterable[str]) -> list[Suppression]:
        """Every live entry for `address`: the list of every account's, then each of
        `accounts`' opt-outs."""
        scopes: list[str | None] = [None, *sorted(set(accounts))]
        async with self.redis.pipeline(transaction=False) as pipe:
            for scope in scopes:
                pipe.hget(self._key(scope), normalise(address))
            stored = await pipe.execute()
        now = self.clock.now()
        return [e for e in (self._live(s, now) for s in stored) if e is not None]

    async def entries(self, account: str | None = None) -> list[Suppression]:
        """The live entries of the list (every account's, or `account`'s opt-outs), by
        address; expired ones are left out (the next bounce of the address overwrites
        them, `mailgw suppression remove` clears them)."""
        stored: Any = await self.redis.hgetall(self._key(account))
        now = self.clock.now()
        live = (self._live(value, now) for value in stored.values())
        return sorted((e for e in live if e is not None), key=lambda s: normalise(s.address))
