"""The worker: owns the consume loop; each job kind's handler only does its one job."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from redis.exceptions import RedisError

from gateway import metrics
from gateway.backoff import retry_delay
from gateway.directory import AccountDirectory
from gateway.errors import JobFailure, MalformedJob, TemporaryFailure
from gateway.handlers import Handler
from gateway.jobs import Job, parse_job
from gateway.metrics import JobOutcome
from gateway.queue import Delivery, JobQueue

log = logging.getLogger(__name__)

# Kinds that may name an account the directory does not hold yet.
DIRECTORY_KINDS = frozenset({"account.upsert", "account.delete"})


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a worker paces itself."""

    concurrency: int = 32
    block_ms: int = 1000
    max_attempts: int = 10
    backoff_initial: float = 30.0
    backoff_max: float = 3600.0
    job_timeout: float = 270.0
    reclaim_interval: float = 30.0


class Worker:
    """Reads jobs from the consumer group and runs up to `concurrency` at once.

    `stop()` is the warm shutdown: no new job is read and `run()` returns once
    the jobs in hand are done. Cancelling `run()` is the cold one: jobs in hand
    stay unacknowledged, and another worker reclaims them after the visibility
    timeout.
    """

    def __init__(
        self,
        queue: JobQueue,
        directory: AccountDirectory,
        handlers: Mapping[str, Handler],
        consumer: str,
        options: WorkerOptions,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.queue = queue
        self.directory = directory
        self.handlers = handlers
        self.consumer = consumer
        self.options = options
        self.jitter = jitter
        self._stopping = asyncio.Event()
        self._in_hand: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        await self.queue.ensure_group()
        loop = asyncio.get_running_loop()
        next_reclaim = loop.time()
        failures = 0
        try:
            while not self._stopping.is_set():
                free = self.options.concurrency - len(self._in_hand)
                if free <= 0:
                    await asyncio.wait(self._in_hand, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    if loop.time() >= next_reclaim:
                        deliveries = await self.queue.reclaim(self.consumer, free)
                        next_reclaim = loop.time() + self.options.reclaim_interval
                        if deliveries:
                            log.warning(
                                "reclaimed %d job(s) left by stopped workers", len(deliveries)
                            )
                    else:
                        deliveries = await self.queue.read(
                            self.consumer, free, self.options.block_ms
                        )
                    failures = 0
                except (RedisError, OSError) as exc:
                    failures += 1
                    delay = min(30.0, 0.5 * 2**failures)
                    log.error("cannot read jobs from Redis (%s); trying again in %.1fs", exc, delay)
                    await self._sleep(delay)
                    continue
                for delivery in deliveries:
                    task = asyncio.create_task(self._process_safely(delivery))
                    self._in_hand.add(task)
                    task.add_done_callback(self._in_hand.discard)
            if self._in_hand:
                log.info("finishing %d job(s) in hand before stopping", len(self._in_hand))
                await asyncio.gather(*self._in_hand, return_exceptions=True)
            with contextlib.suppress(RedisError, OSError):
                await self.queue.forget_consumer(self.consumer)
        except asyncio.CancelledError:
            for task in self._in_hand:
                task.cancel()
            raise

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _process_safely(self, delivery: Delivery) -> None:
        try:
            await self.process(delivery)
        except (RedisError, OSError) as exc:
            # The entry stays pending; it is reclaimed after the visibility timeout.
            log.error("lost Redis while finishing entry %s: %s", delivery.entry_id, exc)

    async def process(self, delivery: Delivery) -> None:
        """Run one delivered entry to its recorded outcome."""
        kind, outcome = await self._process(delivery)
        metrics.record_job(kind, outcome)

    async def _process(self, delivery: Delivery) -> tuple[str, JobOutcome]:
        try:
            if not delivery.has_job_field:
                raise MalformedJob(f"entry has no 'job' field (it has: {delivery.raw})")
            job = parse_job(delivery.raw)
        except MalformedJob as exc:
            log.warning("dead-lettering malformed entry %s: %s", delivery.entry_id, exc.reason)
            await self.queue.dead_letter(delivery, exc.reason)
            return "unknown", "dead_lettered"
        if job.kind not in DIRECTORY_KINDS and await self.directory.get(job.account) is None:
            await self.queue.dead_letter(delivery, f"unknown account '{job.account}'")
            return job.kind, "dead_lettered"
        if delivery.deliveries > self.queue.options.max_deliveries:
            await self.queue.dead_letter(
                delivery,
                f"delivered {delivery.deliveries} times and never finished: the workers"
                " running it stopped or hung each time",
                job,
            )
            return job.kind, "dead_lettered"
        claim = await self.queue.claim(job, delivery)
        if claim.action != "run":
            return job.kind, "deferred" if claim.action == "deferred" else "skipped"
        return job.kind, await self._run(job, delivery, claim.attempts + 1)

    async def _run(self, job: Job, delivery: Delivery, attempt: int) -> JobOutcome:
        try:
            async with asyncio.timeout(self.options.job_timeout):
                events = await self.handlers[job.kind].handle(job, attempt)
        except TemporaryFailure as exc:
            reason, retry_after, reached = exc.reason, exc.retry_after, exc.events
        except JobFailure as exc:
            await self.queue.dead_letter(delivery, exc.reason, job, attempt)
            return "dead_lettered"
        except TimeoutError:
            reason, retry_after, reached = (
                f"timed out after {self.options.job_timeout:g}s",
                None,
                (),
            )
        except Exception as exc:
            log.exception("job %s (%s) failed unexpectedly", job.id, job.kind)
            reason, retry_after, reached = f"{type(exc).__name__}: {exc}", None, ()
        else:
            await self.queue.complete(job, delivery, events)
            return "done"
        if retry_after is None and attempt >= self.options.max_attempts:
            await self.queue.dead_letter(
                delivery, f"gave up after {attempt} attempts: {reason}", job, attempt, reached
            )
            return "dead_lettered"
        delay = retry_after
        if delay is None:
            delay = retry_delay(
                attempt, self.options.backoff_initial, self.options.backoff_max, self.jitter()
            )
        log.info("job %s failed (%s); attempt %d in %.0fs", job.id, reason, attempt + 1, delay)
        await self.queue.retry(job, delivery, attempt, delay, reason, reached)
        return "retried"
