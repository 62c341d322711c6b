"""The account directory: accounts from files, and from `account.upsert` jobs kept in
Redis and cached in each worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from cachetools import TTLCache
from redis.asyncio import Redis

from gateway.account import Account
from gateway.keys import Keys
from gateway.outage import PROCESS, Outage, is_outage
from gateway.settings import AccountsSettings

log = logging.getLogger(__name__)


class AccountDirectory:
    """Looks accounts up by id; an account defined in a file takes precedence over
    one kept in Redis. Redis accounts are cached per process, evicted at once when
    a change is announced on the accounts channel and, in case an announcement was
    missed, after `cache_ttl` seconds anyway."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        file_accounts: Mapping[str, Account],
        *,
        cache_size: int,
        cache_ttl: float,
        timer: Callable[[], float],
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.file_accounts = file_accounts
        self._cache: TTLCache[str, Account] = TTLCache(cache_size, cache_ttl, timer=timer)

    @classmethod
    def cached_as(
        cls,
        settings: AccountsSettings,
        redis: Redis,
        keys: Keys,
        file_accounts: Mapping[str, Account],
        timer: Callable[[], float],
    ) -> AccountDirectory:
        """The directory of a daemon's process, its cache as [accounts] sets it."""
        return cls(
            redis,
            keys,
            file_accounts,
            cache_size=settings.cache_size,
            cache_ttl=settings.cache_ttl.total_seconds(),
            timer=timer,
        )

    def replace_files(self, accounts: Mapping[str, Account]) -> None:
        """Take the accounts of a reloaded configuration."""
        self.file_accounts = accounts

    def known(self, account_id: str) -> Account | None:
        """The account if this process holds it (a file's, or cached), without asking
        Redis: the planner's every job asks, and a coroutine costs more than the lookup."""
        return self.file_accounts.get(account_id) or self._cache.get(account_id)

    async def get(self, account_id: str) -> Account | None:
        account = self.known(account_id)
        if account is not None:
            return account
        stored = await self.redis.hget(self.keys.accounts, account_id)
        if stored is None:
            return None
        account = Account.model_validate_json(stored)
        self._cache[account_id] = account
        return account

    async def store(self, account_id: str, account: Account) -> None:
        """Keep a validated account in Redis and tell every worker to drop its copy."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.accounts, account_id, account.model_dump_json())
            pipe.publish(self.keys.accounts_channel, account_id)
            await pipe.execute()
        self._cache.pop(account_id, None)

    async def remove(self, account_id: str) -> bool:
        """Delete an account kept in Redis; False if there was none."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.accounts, account_id)
            pipe.publish(self.keys.accounts_channel, account_id)
            removed, _ = await pipe.execute()
        self._cache.pop(account_id, None)
        return bool(removed)

    async def follow_changes(
        self, ready: asyncio.Event | None = None, outage: Outage | None = None
    ) -> None:
        """Evict cached accounts as other workers announce changes; runs until cancelled.
        When the subscription is lost, so may be announcements: the cache is emptied as
        it is made again."""
        outage = outage or PROCESS
        failures = 0
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.keys.accounts_channel)
                self._cache.clear()
                if failures:
                    failures = 0
                    outage.ended()
                if ready is not None:
                    ready.set()
                while True:
                    message: dict[str, Any] | None = await pubsub.get_message(timeout=5.0)
                    if message is not None and message.get("type") == "message":
                        self._cache.pop(str(message["data"]), None)
            except Exception as exc:
                failures += 1
                if is_outage(exc):
                    outage.failed("account changes", exc)
                else:
                    log.exception("lost the account changes; following them again")
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
            await outage.wait(failures)
