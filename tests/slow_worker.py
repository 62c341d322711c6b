"""A worker process whose handler announces each job and then hangs (killed by tests)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from redis.asyncio import Redis

from gateway.clock import SystemClock
from gateway.events import Event
from gateway.jobs import KNOWN_KINDS, Job
from gateway.queue import QueueOptions
from tests.support import make_worker


class Hang:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    async def handle(self, job: Job, attempt: int) -> list[Event]:
        self.marker.write_text(job.id)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable: the test kills this process")


async def main(url: str, marker: Path) -> None:
    redis = Redis.from_url(url, decode_responses=True)
    hang = Hang(marker)
    worker = make_worker(
        redis,
        SystemClock(),
        dict.fromkeys(KNOWN_KINDS, hang),
        consumer="doomed",
        queue_options=QueueOptions(visibility_timeout_ms=500),
    )
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
