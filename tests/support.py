"""Helpers shared by tests: a minimal account, a worker wired to a real Redis."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from gateway.account import Account
from gateway.clock import Clock
from gateway.directory import AccountDirectory
from gateway.handlers import Handler
from gateway.keys import Keys
from gateway.queue import JobQueue, QueueOptions
from gateway.worker import Worker, WorkerOptions

ACCOUNT: dict[str, Any] = {
    "id": "salon",
    "business_name": "L'Atelier d'Élodie & Fils",
    "owner_email": "elodie@example.com",
    "plan": "growing",
    "timezone": "Europe/Paris",
    "locale": "fr",
    "country": "FR",
}


def account(**changes: Any) -> Account:
    return Account.model_validate({**ACCOUNT, **changes})


def make_worker(
    redis: Redis,
    clock: Clock,
    handlers: Mapping[str, Handler],
    *,
    consumer: str = "w1",
    queue_options: QueueOptions | None = None,
    **options: Any,
) -> Worker:
    queue = JobQueue(redis, queue_options or QueueOptions(), clock)
    directory = AccountDirectory(
        redis, Keys(), {"salon": account()}, cache_size=100, cache_ttl=60, timer=clock.now
    )
    defaults: dict[str, Any] = {"block_ms": 50, "backoff_initial": 10.0, "backoff_max": 80.0}
    return Worker(
        queue,
        directory,
        handlers,
        consumer,
        WorkerOptions(**{**defaults, **options}),
        jitter=lambda: 0.0,
    )
