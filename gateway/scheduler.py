"""The scheduler role: moves due scheduled and retrying jobs onto the jobs stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.exceptions import RedisError

from gateway.queue import JobQueue

log = logging.getLogger(__name__)


class Scheduler:
    """Promotes due jobs every `interval` seconds, in batches of `batch`. Several
    schedulers may run at once: each promotion is one atomic script."""

    def __init__(self, queue: JobQueue, interval: float, batch: int) -> None:
        self.queue = queue
        self.interval = interval
        self.batch = batch
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                moved = await self.queue.promote_due(self.batch)
                if moved:
                    log.debug("promoted %d due job(s)", moved)
            except (RedisError, OSError) as exc:
                log.error("cannot promote due jobs (%s); trying again", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)
