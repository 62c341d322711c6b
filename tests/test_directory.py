"""The account directory: file precedence, Redis storage, cache eviction across workers."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from gateway.account import Account
from gateway.directory import AccountDirectory
from gateway.keys import Keys
from tests.conftest import FixedClock
from tests.support import account


def directory(redis: Redis, clock: FixedClock, **files: Account) -> AccountDirectory:
    return AccountDirectory(redis, Keys(), files, cache_size=100, cache_ttl=60, timer=clock.now)


async def test_file_accounts_take_precedence(redis: Redis, clock: FixedClock) -> None:
    from_file = account(business_name="From the file")
    accounts = directory(redis, clock, salon=from_file)
    await accounts.store("salon", account(business_name="From Redis"))
    found = await accounts.get("salon")
    assert found is not None and found.business_name == "From the file"
    accounts.replace_files({})
    found = await accounts.get("salon")
    assert found is not None and found.business_name == "From Redis"


async def test_change_announced_by_one_worker_evicts_in_another(
    redis: Redis, clock: FixedClock
) -> None:
    first, second = directory(redis, clock), directory(redis, clock)
    await first.store("salon", account(business_name="Before"))
    cached = await second.get("salon")
    assert cached is not None and cached.business_name == "Before"

    ready = asyncio.Event()
    following = asyncio.create_task(second.follow_changes(ready))
    await ready.wait()
    await first.store("salon", account(business_name="After"))
    for _ in range(100):
        found = await second.get("salon")
        assert found is not None
        if found.business_name == "After":
            break
        await asyncio.sleep(0.02)
    assert found.business_name == "After"
    await first.remove("salon")
    for _ in range(100):
        if await second.get("salon") is None:
            break
        await asyncio.sleep(0.02)
    assert await second.get("salon") is None
    following.cancel()


async def test_missed_announcement_is_caught_by_the_ttl(redis: Redis, clock: FixedClock) -> None:
    accounts = directory(redis, clock)
    await accounts.store("salon", account(business_name="Before"))
    assert await accounts.get("salon") is not None
    # Another process changes the account while this one is not listening.
    await redis.hset("mailgw:accounts", "salon", account(business_name="After").model_dump_json())
    found = await accounts.get("salon")
    assert found is not None and found.business_name == "Before"
    clock.advance(61)
    found = await accounts.get("salon")
    assert found is not None and found.business_name == "After"
