"""The queue's options as the configuration sets them, for the daemon and for the
`mailgw` commands that open the queue."""

from __future__ import annotations

from gateway.queue import QueueOptions
from gateway.settings import Settings


def queue_options(settings: Settings) -> QueueOptions:
    return QueueOptions.from_settings(
        prefix=settings.redis.prefix,
        group=settings.redis.group,
        idempotency_ttl=settings.queue.idempotency_ttl,
        events_max_length=settings.queue.events_max_length,
        visibility_timeout=settings.queue.visibility_timeout,
        max_deliveries=settings.queue.max_deliveries,
        history_ttl=settings.queue.history_ttl,
    )
