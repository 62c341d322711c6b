"""A worker process killed with SIGKILL mid-job: another worker finishes the job."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from redis.asyncio import Redis

from gateway.clock import SystemClock
from gateway.jobs import KNOWN_KINDS
from gateway.queue import QueueOptions
from tests.support import make_worker
from tests.test_queue import booked
from tests.test_worker import Recorder, statuses

ROOT = Path(__file__).resolve().parent.parent


async def test_killed_worker_job_is_finished_by_another(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.slow_worker", redis_url, str(marker)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        await redis.xadd("mailgw:jobs", {"job": json.dumps(booked("mid-job"))})
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert process.poll() is None, "the worker process exited early"
            assert time.monotonic() < deadline, "the worker process never took the job"
            await asyncio.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        process.kill()
    assert marker.read_text() == "mid-job"

    recorder = Recorder()
    survivor = make_worker(
        redis,
        SystemClock(),
        dict.fromkeys(KNOWN_KINDS, recorder),
        consumer="survivor",
        queue_options=QueueOptions(visibility_timeout_ms=500),
        reclaim_interval=0.1,
    )
    pending = await survivor.queue.depths()
    assert (pending.ready, pending.in_flight) == (0, 1)
    running = asyncio.create_task(survivor.run())
    deadline = time.monotonic() + 10
    while not recorder.jobs and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    survivor.stop()
    await asyncio.wait_for(running, 5)

    assert recorder.jobs == ["mid-job"]
    assert await statuses(survivor) == [("mid-job", "sent")]
    depths = await survivor.queue.depths()
    assert (depths.ready, depths.in_flight, depths.dead_letters) == (0, 0, 0)
