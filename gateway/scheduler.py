"""The scheduler role: moves due scheduled and retrying jobs onto the jobs stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.outage import PROCESS, Outage
from gateway.queue import JobQueue

log = logging.getLogger(__name__)


class Scheduler:
    """Promotes due jobs every `interval` seconds, in batches of `batch`. Several
    schedulers may run at once: each promotion is one atomic script."""

    def __init__(
        self, queue: JobQueue, interval: float, batch: int, outage: Outage | None = None
    ) -> None:
        self.queue = queue
        self.interval = interval
        self.batch = batch
        self.outage = outage or PROCESS
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                moved = await self.queue.promote_due(self.batch)
            except Exception as exc:
                failures += 1
                self.outage.step_failed("scheduler", "promote due jobs", exc)
                await self.outage.wait(failures, self._stopping)
                continue
            failures = 0
            self.outage.ended()
            if moved:
                log.debug("promoted %d due job(s)", moved)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)
