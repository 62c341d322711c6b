"""Account lookups with 100,000 accounts kept in Redis: cold (from Redis) and warm
(from the worker's cache), against plain HGET calls in the same run.

    python bench/accounts.py [--accounts 100000] [--lookups 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from gateway.account import Account  # noqa: E402
from gateway.directory import AccountDirectory  # noqa: E402
from gateway.keys import Keys  # noqa: E402
from gateway.redis_conn import connect  # noqa: E402
from tests.redis_server import start_redis  # noqa: E402


def account(i: int) -> Account:
    return Account.model_validate(
        {
            "id": f"acct-{i}",
            "business_name": f"Salon n°{i} d'Élodie & Fils",
            "owner_email": f"owner{i}@example.com",
            "plan": "growing",
            "timezone": "Europe/Paris",
            "locale": "fr",
            "country": "FR",
            "calendars": [{"id": "1", "name": "Élodie", "reply_to": f"rdv{i}@example.com"}],
            "appointment_types": [{"id": "1", "name": "Coupe femme"}],
        }
    )


async def measure(url: str, accounts: int, lookups: int) -> list[tuple[str, float]]:
    redis = connect(url)
    keys = Keys()
    template = account(0).model_dump_json()
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(accounts):
            pipe.hset(keys.accounts, f"acct-{i}", template.replace("acct-0", f"acct-{i}"))
        await pipe.execute()
    memory = (await redis.info("memory"))["used_memory"]
    ids = [f"acct-{random.randrange(accounts)}" for _ in range(lookups)]

    start = time.perf_counter()
    for account_id in ids:
        await redis.hget(keys.accounts, account_id)
    reference = lookups / (time.perf_counter() - start)

    directory = AccountDirectory(
        redis, keys, {}, cache_size=accounts, cache_ttl=3600, timer=time.monotonic
    )
    start = time.perf_counter()
    for account_id in ids:
        assert await directory.get(account_id) is not None
    cold = lookups / (time.perf_counter() - start)
    start = time.perf_counter()
    for account_id in ids:
        await directory.get(account_id)
    warm = lookups / (time.perf_counter() - start)
    await redis.aclose()
    print(f"{accounts} accounts in Redis, {memory / accounts:,.0f} bytes of Redis memory each")
    return [
        ("plain HGET (reference)", reference),
        ("directory lookup, cold (HGET + validate)", cold),
        ("directory lookup, warm (cache)", warm),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        server, port = start_redis(Path(directory))
        try:
            rows = asyncio.run(measure(f"redis://127.0.0.1:{port}/0", args.accounts, args.lookups))
        finally:
            server.terminate()
            server.wait()
    reference = rows[0][1]
    for name, rate in rows:
        print(f"{name:<45}{rate:>12,.0f} /s{rate / reference:>9.2f} x reference")


if __name__ == "__main__":
    main()
