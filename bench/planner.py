"""Planner scale: appointments planned per second, due notifications dispatched per second
(scheduled set -> jobs stream), and Redis memory per pending notification.

    python bench/planner.py [--appointments 20000] [--concurrency 200]

Each appointment of the example French account (3 e-mail reminders, an SMS reminder,
2 follow-ups) is booked ten days ahead, so all but the confirmation wait in Redis.
One process plans, with `--concurrency` jobs in hand as a worker keeps them (each
slot takes the next job when its own is done): the planning jobs in hand at one
moment leave for Redis together, as one script call. Also shows the CPU time one
plan costs, in this process and in Redis: the two work side by side, and the
larger bounds the rate.
Targets (issue 4): 20,000 plans/s, 20,000 dispatches/s, 512 bytes per pending one.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from redis.asyncio import Redis  # noqa: E402

from gateway.config import load_config  # noqa: E402
from gateway.directory import AccountDirectory  # noqa: E402
from gateway.jobs import AppointmentJob, parse_job  # noqa: E402
from gateway.keys import Keys  # noqa: E402
from gateway.planner import Planner  # noqa: E402
from gateway.queue import JobQueue, QueueOptions  # noqa: E402
from gateway.redis_conn import connect  # noqa: E402
from tests.conftest import FixedClock  # noqa: E402
from tests.redis_server import start_redis  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
# The rates are floors, the memory a ceiling.
TARGETS = {"plans": 20_000, "dispatches": 20_000, "bytes": 512}
CEILINGS = {"bytes"}


def booking(index: int) -> AppointmentJob:
    start = NOW + timedelta(days=10, minutes=index % 600)
    job = parse_job(
        json.dumps(
            {
                "v": 1,
                "id": f"book-{index}",
                "kind": "appointment.booked",
                "account": "atelier-elodie",
                "appointment": {
                    "id": f"appt-{index}",
                    "calendar": "101",
                    "type": "2001",
                    "start": start.isoformat(),
                    "end": (start + timedelta(minutes=45)).isoformat(),
                    "timezone": "Europe/Paris",
                    "clients": [
                        {
                            "name": "Zoé Martin",
                            "emails": [f"client{index}@example.com"],
                            "phone": "+33612345678",
                        }
                    ],
                },
            }
        )
    )
    assert isinstance(job, AppointmentJob)
    return job


async def measure(url: str, appointments: int, concurrency: int) -> dict[str, float]:
    redis = connect(url, max_connections=concurrency + 8)
    config = load_config(ROOT / "config" / "mailgw.toml")
    clock = FixedClock(NOW.timestamp())
    keys = Keys()
    queue = JobQueue(redis, QueueOptions(), clock)
    directory = AccountDirectory(
        redis, keys, config.accounts, cache_size=10, cache_ttl=3600, timer=clock.now
    )
    planner = Planner(redis, keys, queue, directory, clock, lambda: 400 * 86400)
    await queue.ensure_group()
    jobs = [booking(i) for i in range(appointments)]
    # The jobs made in advance are the bench's, not the planner's: a worker holds a few
    # at a time. Kept out of the garbage collector's rounds, which would otherwise walk
    # millions of them again and again.
    gc.collect()
    gc.freeze()
    before = (await redis.info("memory"))["used_memory"]

    waiting = iter(jobs)

    async def slot() -> None:
        for job in waiting:
            await planner.handle(job, 1)

    redis_cpu = await cpu_seconds(redis)
    own_cpu = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(slot() for _ in range(concurrency)))
    planning = time.perf_counter() - start
    own_cpu = time.process_time() - own_cpu
    redis_cpu = await cpu_seconds(redis) - redis_cpu

    pending = int(await redis.get(keys.waiting_count) or 0)
    # The confirmations went out at once (a worker would have taken them from the
    # stream); everything else the planning left counts: the appointments' data,
    # histories and booking records, the confirmations' idempotency records.
    await redis.delete(keys.jobs)
    memory = (await redis.info("memory"))["used_memory"] - before
    clock.current = (NOW + timedelta(days=400)).timestamp()
    start = time.perf_counter()
    dispatched = await queue.promote_due(1000)
    dispatching = time.perf_counter() - start
    await redis.aclose()
    return {
        "plans": appointments / planning,
        "dispatches": dispatched / dispatching,
        "bytes": memory / pending,
        "pending": pending,
        "own_cpu": own_cpu / appointments * 1e6,
        "redis_cpu": redis_cpu / appointments * 1e6,
    }


async def cpu_seconds(redis: Redis) -> float:
    """The CPU time the Redis server has used so far."""
    cpu = await redis.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--appointments", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        server, port = start_redis(Path(directory))
        try:
            figures = asyncio.run(
                measure(f"redis://127.0.0.1:{port}/0", args.appointments, args.concurrency)
            )
        finally:
            server.terminate()
            server.wait()
    print(f"{args.appointments} appointments, {figures['pending']:.0f} pending notifications")
    rows = [
        ("plans/s (appointment.booked handled)", "plans", "{:,.0f}"),
        ("dispatches/s (scheduled -> jobs stream)", "dispatches", "{:,.0f}"),
        ("Redis bytes per pending notification", "bytes", "{:,.0f}"),
    ]
    for name, key, form in rows:
        ratio = figures[key] / TARGETS[key]
        met = ratio <= 1 if key in CEILINGS else ratio >= 1
        print(
            f"{name:<44}{form.format(figures[key]):>10}   {ratio:5.2f}x the target "
            f"{TARGETS[key]:,} ({'met' if met else 'missed'})"
        )
    print(
        f"CPU per plan: {figures['own_cpu']:,.0f} µs in the planning process, "
        f"{figures['redis_cpu']:,.0f} µs in Redis"
    )


if __name__ == "__main__":
    main()
