"""The queue's depths as metrics (mailgw_queue_depth), refreshed from Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from gateway.metrics import QUEUE_DEPTH
from gateway.outage import is_outage
from gateway.queue import JobQueue

log = logging.getLogger(__name__)


async def refresh_queue_depths(queue: JobQueue) -> None:
    """Set the queue depth gauges from Redis."""
    depths = await queue.depths()
    for field in dataclasses.fields(depths):
        QUEUE_DEPTH.labels(field.name).set(getattr(depths, field.name))


async def watch_queue_depths(queue: JobQueue, interval: float = 15.0) -> None:
    """Refresh the queue depth gauges every `interval` seconds, until cancelled; Redis
    being out of reach is tried again, never fatal (the other parts say it once)."""
    while True:
        try:
            await refresh_queue_depths(queue)
        except Exception as exc:
            if not is_outage(exc):
                log.warning("cannot read the queue depths for the metrics: %s", exc)
        await asyncio.sleep(interval)
