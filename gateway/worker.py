"""The worker: owns the consume loop; each job kind's handler only does its one job."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from redis.exceptions import RedisError

from gateway import metrics
from gateway.backoff import retry_delay
from gateway.deadlines import deadline_in
from gateway.directory import AccountDirectory
from gateway.errors import JobFailure, MalformedJob, TemporaryFailure
from gateway.events import Event
from gateway.handlers import ARRIVAL, Handler
from gateway.jobs import DIRECTORY_KINDS, Job, parse_job
from gateway.metrics import JobOutcome
from gateway.outage import PROCESS, Outage, is_outage
from gateway.queue import Delivery, JobQueue

log = logging.getLogger(__name__)

T = TypeVar("T")

# The shortest wait before a job's next attempt, whatever the failing part asks.
MIN_RETRY_DELAY = 1.0

# Kinds that may name an account the directory does not hold yet.


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
        outage: Outage | None = None,
    ) -> None:
        self.queue = queue
        self.directory = directory
        self.handlers = handlers
        self.consumer = consumer
        self.options = options
        self.jitter = jitter
        self.outage = outage or PROCESS
        self._stopping = asyncio.Event()
        self._in_hand: set[asyncio.Task[None]] = set()
        # The entries of the jobs in hand.
        self._held: set[str] = set()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_reclaim = loop.time()
        failures = 0
        group_made = False
        try:
            while not self._stopping.is_set():
                free = self.options.concurrency - len(self._in_hand)
                if free <= 0:
                    await asyncio.wait(self._in_hand, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    if not group_made:
                        await self.queue.ensure_group()
                        group_made = True
                    if failures:
                        # A read whose reply was lost left entries delivered to us.
                        deliveries = await self.queue.orphans(self.consumer, self._held, free)
                    elif loop.time() >= next_reclaim:
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
                except Exception as exc:
                    failures += 1
                    if self.outage.step_failed("worker", "read jobs", exc):
                        group_made = False
                    await self.outage.wait(failures, self._stopping)
                    continue
                failures = 0
                self.outage.ended()
                # Started nearest deadline first (PRODUCT.md): what one read holds, not
                # the stream, which is read in arrival order.
                for delivery in sorted(deliveries, key=lambda d: deadline_in(d.raw)):
                    self._take(delivery)
            if self._in_hand:
                log.info("finishing %d job(s) in hand before stopping", len(self._in_hand))
                await asyncio.gather(*self._in_hand, return_exceptions=True)
            with contextlib.suppress(RedisError, OSError):
                await self.queue.forget_consumer(self.consumer)
        except asyncio.CancelledError:
            for task in self._in_hand:
                task.cancel()
            raise

    def _take(self, delivery: Delivery) -> None:
        task = asyncio.create_task(self._process_safely(delivery))
        self._in_hand.add(task)
        self._held.add(delivery.entry_id)
        task.add_done_callback(self._in_hand.discard)
        task.add_done_callback(lambda _: self._held.discard(delivery.entry_id))

    async def _process_safely(self, delivery: Delivery) -> None:
        # Whatever fails, the entry stays pending: it is reclaimed after the visibility
        # timeout, and each delivery counts toward queue.max_deliveries.
        try:
            await self.process(delivery)
        except Exception as exc:
            if not is_outage(exc):
                log.exception("entry %s failed; left for another try", delivery.entry_id)

    async def process(self, delivery: Delivery) -> None:
        """Run one delivered entry to its recorded outcome."""
        deadline = asyncio.get_running_loop().time() + self.options.job_timeout
        kind, outcome = await self._process(delivery, deadline)
        metrics.record_job(kind, outcome)

    async def _process(self, delivery: Delivery, deadline: float) -> tuple[str, JobOutcome]:
        try:
            if delivery.problem is not None:
                raise MalformedJob(delivery.problem)
            if not delivery.has_job_field:
                raise MalformedJob(f"entry has no 'job' field (it has: {delivery.raw[:500]})")
            job = parse_job(delivery.raw)
        except MalformedJob as exc:
            log.warning("dead-lettering malformed entry %s: %s", delivery.entry_id, exc.reason)
            await self._recorded(partial(self.queue.dead_letter, delivery, exc.reason), deadline)
            return "unknown", "dead_lettered"
        if job.kind not in DIRECTORY_KINDS:
            account = await self._recorded(partial(self.directory.get, job.account), deadline)
            if account is None:
                reason = f"unknown account '{job.account}'"
                await self._recorded(partial(self.queue.dead_letter, delivery, reason), deadline)
                return job.kind, "dead_lettered"
        if delivery.deliveries > self.queue.options.max_deliveries:
            reason = (
                f"delivered {delivery.deliveries} times and never finished: the workers"
                " running it stopped or hung each time"
            )
            await self._recorded(partial(self.queue.dead_letter, delivery, reason, job), deadline)
            return job.kind, "dead_lettered"
        claim = await self._recorded(partial(self.queue.claim, job, delivery), deadline)
        if claim.action != "run":
            return job.kind, "deferred" if claim.action == "deferred" else "skipped"
        arrived = ARRIVAL.set(claim.arrival)
        try:
            return job.kind, await self._run(job, delivery, claim.attempts + 1, deadline)
        finally:
            ARRIVAL.reset(arrived)

    async def _recorded(self, step: Callable[[], Awaitable[T]], deadline: float) -> T:
        """`step`'s result, run again while Redis is out of reach and the job's time lasts
        (then the entry stays pending, for another worker to reclaim). Every step given
        is safe to repeat, even after a reply lost on its way back."""
        return await self.outage.retried("worker", step, deadline)

    async def _handled(self, job: Job, attempt: int, deadline: float) -> list[Event]:
        """The handler's events; Redis out of reach is not the job's failure: the handler
        runs again once it is back (handlers are safe to repeat), spending no attempt."""

        async def once() -> list[Event]:
            async with asyncio.timeout_at(deadline):
                return await self.handlers[job.kind].handle(job, attempt)

        return await self._recorded(once, deadline)

    async def _run(self, job: Job, delivery: Delivery, attempt: int, deadline: float) -> JobOutcome:
        give_up_at: float | None = None
        try:
            events = await self._handled(job, attempt, deadline)
        except TemporaryFailure as exc:
            reason, retry_after, reached = exc.reason, exc.retry_after, exc.events
            give_up_at = exc.give_up_at
        except JobFailure as exc:
            dead = partial(self.queue.dead_letter, delivery, exc.reason, job, attempt)
            await self._recorded(dead, deadline)
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
            await self._recorded(partial(self.queue.complete, job, delivery, events), deadline)
            return "done"
        delay = self._delay(attempt, retry_after, give_up_at is not None)
        if give_up_at is None:
            exhausted = attempt >= self.options.max_attempts
        else:
            exhausted = self.queue.clock.now() + delay > give_up_at
        if exhausted:
            given_up = f"gave up after {attempt} attempts: {reason}"
            dead = partial(self.queue.dead_letter, delivery, given_up, job, attempt, reached)
            await self._recorded(dead, deadline)
            return "dead_lettered"
        log.info("job %s failed (%s); attempt %d in %.0fs", job.id, reason, attempt + 1, delay)
        retry = partial(self.queue.retry, job, delivery, attempt, delay, reason, reached)
        await self._recorded(retry, deadline)
        return "retried"

    def _delay(self, attempt: int, retry_after: float | None, own_end: bool) -> float:
        """Seconds before the next attempt: the queue's backoff, or the failing part's own
        time, at least MIN_RETRY_DELAY (a Retry-After of 0 would come back at every
        scheduler step) and, unless its schedule has its own end, at most
        queue.backoff_max (a Retry-After of years would never come back)."""
        if retry_after is None:
            return retry_delay(
                attempt, self.options.backoff_initial, self.options.backoff_max, self.jitter()
            )
        delay = max(retry_after, MIN_RETRY_DELAY)
        return delay if own_end else min(delay, max(self.options.backoff_max, MIN_RETRY_DELAY))
