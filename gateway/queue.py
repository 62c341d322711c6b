"""The Redis job queue: stream and consumer group, waiting sets, dead letters, events."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway import metrics, scripts
from gateway.batching import Arg, Script, ScriptBatcher
from gateway.clock import Clock, rfc3339
from gateway.dead_letters import DeadLetters
from gateway.depths import Depths, read_depths
from gateway.entries import MAX_NAMED_ID, escaped, json_object, not_utf8_at, text_field
from gateway.events import Event
from gateway.jobs import Job, channel_of, event_kind, job_to_json
from gateway.keys import Keys
from gateway.notifications import (
    ENTRIES_SEP,
    Waiting,
    appointment_data,
    parse_entries,
    waiting_in,
)


@dataclass(frozen=True, slots=True)
class QueueOptions:
    """The queue's tunables, in the units Redis wants."""

    prefix: str = "mailgw:"
    group: str = "workers"
    state_ttl: int = 7 * 86400
    events_max_length: int = 1_000_000
    visibility_timeout_ms: int = 300_000
    max_deliveries: int = 5
    history_ttl: int = 400 * 86400

    @classmethod
    def from_settings(
        cls,
        *,
        prefix: str,
        group: str,
        idempotency_ttl: timedelta,
        events_max_length: int,
        visibility_timeout: timedelta,
        max_deliveries: int,
        history_ttl: timedelta,
    ) -> QueueOptions:
        return cls(
            prefix=prefix,
            group=group,
            state_ttl=max(1, int(idempotency_ttl.total_seconds())),
            events_max_length=events_max_length,
            visibility_timeout_ms=int(visibility_timeout.total_seconds() * 1000),
            max_deliveries=max_deliveries,
            history_ttl=max(1, int(history_ttl.total_seconds())),
        )


# Not frozen: one is made per planning job, and a frozen dataclass is slow to make.
@dataclass(slots=True)
class NotificationPlan:
    """What one planning job leaves waiting for an appointment (see PLAN_NOTIFICATIONS)."""

    appointment: str
    account: str
    source: str
    context: bytes
    replace: bool
    # How long what the appointment keeps lasts after its last notification falls due.
    ttl: int
    # The clients' addresses, whose bookings record the appointment.
    clients: Sequence[str]
    start: float
    cancelled: bool
    # The entry of each notification left waiting (see gateway/notifications.py), and its due
    # time (epoch ms), in the same order.
    entries: Sequence[str]
    dues: Sequence[int]
    # The notifications made at once: (id, job) each (see notifications.notification_job).
    made_now: Sequence[tuple[str, bytes]]
    # The event's order key (gateway/ordering.py): a later event's planning stays.
    order: str
    # The number the appointment's SMS reminder goes to, if it has one.
    texted: str | None = None


@dataclass(frozen=True, slots=True)
class Planning:
    """What a planning job's script call did: the waiting notifications it replaced and
    the made jobs it cancelled; or, when a later event is planned already (`applied`:
    its order key and job), nothing."""

    replaced: Sequence[Waiting] = ()
    dropped: Sequence[str] = ()
    applied: tuple[str, str] | None = None


# What most plannings do, made once (the first planning of an appointment replaces nothing).
_PLANNED = Planning()


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stream entry handed to this worker: its job's JSON, or (`has_job_field`
    False) all its fields as JSON, with what was not UTF-8 escaped (`problem` says where)."""

    entry_id: str
    raw: str
    has_job_field: bool
    deliveries: int = 1
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """What the queue says about a delivered job: run it, or it was dealt with."""

    action: Literal["run", "deferred", "skip"]
    attempts: int = 0
    state: str = ""
    # For a job run whose order counts (Job.ordered): the stream entry id it first came as.
    arrival: str | None = None


@dataclass(frozen=True, slots=True)
class Enqueued:
    """The result of enqueueing one job."""

    job_id: str
    queued: bool
    where: str


def _ms(epoch: float) -> int:
    return int(epoch * 1000)


class JobQueue:
    """Every queue operation, each one round trip and atomic where it moves a job."""

    def __init__(self, redis: Redis, options: QueueOptions, clock: Clock) -> None:
        self.redis = redis
        self.options = options
        self.clock = clock
        self.keys = Keys(options.prefix)
        self._batcher = ScriptBatcher(redis)
        self.dead_letters = DeadLetters(redis, self.keys, self._batcher, options.state_ttl)
        # Scripts take their arguments as text, as Redis takes a command's.
        self._state_ttl = str(options.state_ttl)
        self._events_max_length = str(options.events_max_length)
        # Where the scripts mirror the events of an appointment, and for how long.
        self._history = (self.keys.history_prefix, str(options.history_ttl))
        self._plan_keys = (self.keys.notifications, self.keys.jobs, self.keys.waiting_count)
        # Where a job waits, for the scripts that cancel an appointment's (see job_keys in
        # gateway/lua/appointment_data.lua).
        self._job_keys = (
            self.keys.scheduled,
            self.keys.retry,
            self.keys.payloads,
            self.keys.attempts,
        )

    def _run(self, script: Script, keys: list[str], args: list[Arg]) -> asyncio.Future[Any]:
        return self._batcher.run(script, keys, args)

    async def ensure_group(self) -> None:
        """Create the consumer group; from the stream's start, so that jobs added
        before the first worker ever ran are not skipped."""
        try:
            await self.redis.xgroup_create(
                self.keys.jobs, self.options.group, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # Producing

    async def enqueue(self, job: Job) -> Enqueued:
        """Queue a validated job once: a job id already known is not queued again."""
        now = self.clock.now()
        due = _ms(job.send_at.timestamp()) if job.send_at else 0
        appointment = job.pending_appointment
        queued, where = await self._run(
            scripts.ENQUEUE,
            keys=[
                self.keys.jobs,
                self.keys.job_state(job.id),
                self.keys.scheduled,
                self.keys.payloads,
                self.keys.appointment(appointment or ""),
                self.keys.arrival(job.id),
            ],
            args=[
                job.id,
                job_to_json(job),
                str(due),
                str(_ms(now)),
                self._state_ttl,
                "1" if appointment else "0",
                "1" if job.ordered else "0",
            ],
        )
        return Enqueued(job.id, bool(queued), str(where))

    async def plan_notifications(self, plan: NotificationPlan) -> Planning:
        """Keep an appointment's notifications, making at once the jobs of those due now,
        unless a later event is planned already (see Planning)."""
        now = _ms(self.clock.now())
        dues = plan.dues
        # Kept until the last one is made, however far ahead, then as long as a history.
        ttl = plan.ttl + math.ceil((max(dues, default=now) - now) / 1000)
        notifications, jobs, waiting_count = self._plan_keys
        keys = [notifications, self.keys.appointment_data(plan.appointment), jobs, waiting_count]
        if plan.replace or plan.cancelled:
            # Only a replacement cancels jobs: a booking, the common case, names no more keys.
            keys += [*self._job_keys, self.keys.appointment(plan.appointment)]
        reply = await self._run(
            scripts.PLAN_NOTIFICATIONS,
            keys=keys,
            args=[
                plan.appointment,
                plan.source,
                appointment_data(
                    plan.account,
                    plan.source,
                    ENTRIES_SEP.join(plan.entries),
                    ENTRIES_SEP.join([job_id for job_id, _ in plan.made_now]),
                    plan.order,
                    plan.context,
                ),
                "cancel" if plan.cancelled else "replace" if plan.replace else "add",
                str(ttl),
                ttl,
                self.keys.job_state_prefix,
                self._state_ttl,
                str(plan.start),
                self.keys.sms_waiting(plan.texted) if plan.texted else "",
                len(dues),
                str(min(dues)) if dues else "",
                now,
                plan.ttl,
                len(plan.clients),
                *[self.keys.bookings(plan.account, address) for address in plan.clients],
                *[part for made in plan.made_now for part in made],
            ],
        )
        if reply is None:
            return _PLANNED
        if isinstance(reply, list):
            return Planning(applied=(str(reply[0]), str(reply[1])))
        dropped, _, cancelled = str(reply).partition("\x1d")
        return Planning(parse_entries(dropped), _split(cancelled))

    async def resend_confirmation(
        self, appointment: str, position: str, jobs: Sequence[tuple[str, bytes]]
    ) -> tuple[str, str] | None:
        """Queue the confirmation jobs ((id, job) each) of a resend at `position` (see
        gateway/ordering.py), unless the appointment is cancelled or a later event is
        planned; then returns that event's order key and job."""
        reply = await self._run(
            scripts.RESEND_CONFIRMATION,
            keys=[
                self.keys.appointment_data(appointment),
                self.keys.jobs,
                self.keys.appointment(appointment),
            ],
            args=[
                position,
                self.keys.job_state_prefix,
                self._state_ttl,
                *[part for made in jobs for part in made],
            ],
        )
        return (str(reply[0]), str(reply[1])) if reply else None

    async def arrival_now(self) -> str:
        """A place in the order of arrivals now (a stream entry id), for an appointment's
        event handed to the planner by no worker."""
        return str(await self._run(scripts.RESERVE_ARRIVAL, keys=[self.keys.jobs], args=[]))

    async def sequence(self, appointment: str, job_id: str, step: int, ttl: int) -> int:
        """The calendar SEQUENCE the job gives the appointment (see scripts.SEQUENCE)."""
        return int(
            await self._run(
                scripts.SEQUENCE,
                keys=[self.keys.sequence(appointment)],
                args=[job_id, str(step), str(ttl)],
            )
        )

    async def promote_due(self, limit: int) -> int:
        """Move due scheduled and retrying jobs, and due notifications, onto the stream;
        returns how many."""
        now = _ms(self.clock.now())
        moved = 0
        while True:
            seen, made = await self._run(
                scripts.PROMOTE_NOTIFICATIONS,
                keys=[self.keys.notifications, self.keys.jobs, self.keys.waiting_count],
                args=[
                    str(now),
                    str(limit),
                    self.keys.appointment_data_prefix,
                    self.keys.job_state_prefix,
                    self._state_ttl,
                ],
            )
            moved += int(made)
            if int(seen) < limit:
                break
        for waiting in (self.keys.scheduled, self.keys.retry):
            while True:
                count = int(
                    await self._run(
                        scripts.PROMOTE,
                        keys=[waiting, self.keys.payloads, self.keys.jobs],
                        args=[str(now), str(limit), self.keys.job_state_prefix, self._state_ttl],
                    )
                )
                moved += count
                if count < limit:
                    break
        return moved

    async def cancel_appointment(self, appointment_id: str) -> list[str]:
        """Cancel every pending job of one appointment; returns the cancelled ids."""
        ids = await self._run(
            scripts.CANCEL_APPOINTMENT,
            keys=[
                self.keys.appointment_data(appointment_id),
                self.keys.appointment(appointment_id),
                *self._job_keys,
            ],
            args=[self.keys.job_state_prefix, self._state_ttl],
        )
        return [str(i) for i in ids]

    # Consuming

    async def forget_consumer(self, consumer: str) -> bool:
        """Drop a stopping worker's name from the group if it holds no entry, so
        that names of past processes do not pile up."""
        removed = await self._run(
            scripts.FORGET_CONSUMER, keys=[self.keys.jobs], args=[self.options.group, consumer]
        )
        return bool(removed)

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Delivery]:
        """New entries for this consumer, waiting up to `block_ms` for one."""
        reply: Any = await self.redis.xreadgroup(
            self.options.group, consumer, {self.keys.jobs: ">"}, count=count, block=block_ms
        )
        if not reply:
            return []
        return [_delivery(entry_id, fields) for entry_id, fields in reply[0][1]]

    async def reclaim(self, consumer: str, count: int) -> list[Delivery]:
        """Take over entries left unacknowledged past the visibility timeout by a
        worker that died or hung. Each carries how often it was delivered, so that
        a job that kills every worker that touches it can be set aside."""
        pending: Any = await self.redis.xpending_range(
            self.keys.jobs,
            self.options.group,
            min="-",
            max="+",
            count=count,
            idle=self.options.visibility_timeout_ms,
        )
        if not pending:
            return []
        delivered = {p["message_id"]: int(p["times_delivered"]) for p in pending}
        claimed: Any = await self.redis.xclaim(
            self.keys.jobs,
            self.options.group,
            consumer,
            self.options.visibility_timeout_ms,
            list(delivered),
        )
        return [
            _delivery(entry_id, fields, delivered[entry_id] + 1)
            for entry_id, fields in claimed
            if fields is not None
        ]

    async def orphans(self, consumer: str, held: set[str], count: int) -> list[Delivery]:
        """Entries delivered to `consumer` that it does not hold: an XREADGROUP whose reply
        was lost with the connection (Redis went away just after running it). Taken again
        at once, rather than after the visibility timeout."""
        pending: Any = await self.redis.xpending_range(
            self.keys.jobs, self.options.group, min="-", max="+", count=count + len(held),
            consumername=consumer,
        )  # fmt: skip
        delivered = {
            p["message_id"]: int(p["times_delivered"])
            for p in pending
            if p["message_id"] not in held
        }
        if not delivered:
            return []
        claimed: Any = await self.redis.xclaim(
            self.keys.jobs, self.options.group, consumer, 0, list(delivered)[:count]
        )
        return [
            _delivery(entry_id, fields, delivered[entry_id] + 1)
            for entry_id, fields in claimed
            if fields is not None
        ]

    async def claim(self, job: Job, delivery: Delivery) -> Claim:
        """Take ownership of a delivered job before running it (idempotency)."""
        now = self.clock.now()
        due = _ms(job.send_at.timestamp()) if job.send_at else 0
        appointment = job.pending_appointment
        skipped = self._event(job, "skipped", None, now)
        action, detail, *arrived = await self._run(
            scripts.CLAIM,
            keys=[
                self.keys.jobs,
                self.keys.job_state(job.id),
                self.keys.scheduled,
                self.keys.payloads,
                self.keys.appointment(appointment or ""),
                self.keys.attempts,
                self.keys.events,
                self.keys.delivered(job.id),
                self.keys.arrival(job.id),
            ],
            args=[
                self.options.group,
                delivery.entry_id,
                job.id,
                delivery.raw,
                str(due),
                str(_ms(now)),
                self._state_ttl,
                "1" if appointment else "0",
                self._events_max_length,
                skipped.to_json(),
                *self._history,
                event_kind(job),
                channel_of(job) or "",
                "1" if job.ordered else "0",
            ],
        )
        if action == "run":
            arrival = str(arrived[0]) if arrived and arrived[0] else None
            return Claim("run", attempts=int(detail), arrival=arrival)
        if action == "deferred":
            return Claim("deferred")
        return Claim("skip", state=str(detail))

    async def complete(self, job: Job, delivery: Delivery, events: Sequence[Event]) -> None:
        """Record the job's outcome events and acknowledge it, atomically."""
        await self._run(
            scripts.COMPLETE,
            keys=[
                self.keys.jobs,
                self.keys.job_state(job.id),
                self.keys.attempts,
                self.keys.appointment(job.pending_appointment or ""),
                self.keys.events,
            ],
            args=[
                self.options.group,
                delivery.entry_id,
                job.id,
                self._state_ttl,
                self._events_max_length,
                *self._history,
                *(e.to_json() for e in events),
            ],
        )
        metrics.record_events(events)

    async def retry(
        self,
        job: Job,
        delivery: Delivery,
        attempts: int,
        delay: float,
        reason: str,
        reached: Sequence[Event] = (),
    ) -> bool:
        """Park a failed job for another attempt after `delay` seconds, with a
        `deferred` event and the events of outcomes already `reached`; False if
        its appointment was cancelled meanwhile."""
        now = self.clock.now()
        appointment = job.pending_appointment
        event = self._event(job, "deferred", f"attempt {attempts} failed: {reason}", now)
        parked = await self._run(
            scripts.RETRY,
            keys=[
                self.keys.jobs,
                self.keys.job_state(job.id),
                self.keys.retry,
                self.keys.payloads,
                self.keys.attempts,
                self.keys.appointment(appointment or ""),
                self.keys.events,
            ],
            args=[
                self.options.group,
                delivery.entry_id,
                job.id,
                delivery.raw,
                str(_ms(now + delay)),
                str(attempts),
                self._state_ttl,
                self._events_max_length,
                event.to_json(),
                "1" if appointment else "0",
                *self._history,
                *(e.to_json() for e in reached),
            ],
        )
        metrics.record_events([event, *reached])
        return bool(parked)

    async def dead_letter(
        self,
        delivery: Delivery,
        reason: str,
        job: Job | None = None,
        attempts: int = 0,
        reached: Sequence[Event] = (),
    ) -> None:
        """Move an entry to the dead letters with its reason and a `failed` event.

        `job` is given only for a job this worker claimed; a malformed entry's
        contents are kept as they came, and no job id state is touched."""
        now = self.clock.now()
        if job is None:
            event = _malformed_event(delivery, escaped(reason), now)
        else:
            event = self._event(job, "failed", reason, now)
        await self._run(
            scripts.DEAD_LETTER,
            keys=[
                self.keys.jobs,
                self.keys.dead,
                self.keys.events,
                self.keys.job_state(job.id if job else ""),
                self.keys.attempts,
                self.keys.appointment(job.pending_appointment or "" if job else ""),
                self.keys.delivered(job.id if job else ""),
            ],
            args=[
                self.options.group,
                delivery.entry_id,
                delivery.raw,
                escaped(reason),
                rfc3339(now),
                str(attempts),
                job.id if job else "",
                self._state_ttl,
                self._events_max_length,
                event.to_json(),
                "job" if delivery.has_job_field else "fields",
                *self._history,
                event_kind(job) if job else "",
                (channel_of(job) or "") if job else "",
                *(e.to_json() for e in reached),
            ],
        )
        metrics.record_events([event, *reached])

    def _event(
        self,
        job: Job,
        status: Literal["skipped", "deferred", "failed"],
        reason: str | None,
        now: float,
    ) -> Event:
        return Event(
            job=job.id,
            kind=job.kind,
            status=status,
            at=rfc3339(now),
            account=job.account,
            appointment=job.appointment_id,
            reason=reason,
        )

    # Inspecting

    async def depths(self) -> Depths:
        return await read_depths(self.redis, self.keys, self.options.group)

    async def waiting_notifications(self, appointment: str) -> list[Waiting]:
        """An appointment's notifications not yet due, the first due first."""
        data: Any = await self.redis.get(self.keys.appointment_data(appointment))
        return sorted(waiting_in(data), key=_due)

    async def publish(self, events: Sequence[Event]) -> None:
        """Record outcomes that no job's completion carries (delivery reports, opt-outs):
        on the events stream, and in their appointment's history."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for event in events:
                entry: Any = {"event": event.to_json()}  # redis-py wants its own key union
                pipe.xadd(
                    self.keys.events, entry, maxlen=self.options.events_max_length, approximate=True
                )
                if event.appointment:
                    history = self.keys.history(event.appointment)
                    pipe.xadd(history, entry)
                    pipe.expire(history, self.options.history_ttl)
            await pipe.execute()
        metrics.record_events(events)

    async def events(
        self, after: str = "0", count: int = 100, block_ms: int | None = None
    ) -> list[tuple[str, str]]:
        """Events after the entry id `after`, oldest first: (entry id, event JSON)."""
        reply: Any = await self.redis.xread({self.keys.events: after}, count=count, block=block_ms)
        if not reply:
            return []
        return [(entry_id, fields.get("event", "")) for entry_id, fields in reply[0][1]]


def _due(waiting: Waiting) -> int:
    return waiting.due_ms


def _split(joined: str) -> list[str]:
    return joined.split("\x1e") if joined else []


def _delivery(entry_id: str, fields: dict[str, str], deliveries: int = 1) -> Delivery:
    job = fields.get("job")
    problem = None
    if job is not None:
        at = not_utf8_at(job)
        if at is None:
            # Other fields are ignored, whatever their bytes, as unknown job fields are.
            return Delivery(entry_id, job, True, deliveries)
        problem = f"field 'job' is not UTF-8 text (byte {at})"
    # An entry without a readable `job` field is kept whole so that nothing is lost.
    whole = escaped(json.dumps(fields, ensure_ascii=False))
    return Delivery(entry_id, whole, False, deliveries, problem)


def _malformed_event(delivery: Delivery, reason: str, now: float) -> Event:
    """A `failed` event for an entry that is not a valid job, naming what it can."""
    raw = (json_object(delivery.raw) or {}) if delivery.has_job_field else {}
    job_id = text_field(raw.get("id"), MAX_NAMED_ID)
    kind = text_field(raw.get("kind"), MAX_NAMED_ID)
    account = text_field(raw.get("account"), MAX_NAMED_ID)
    return Event(
        job=job_id or f"entry:{delivery.entry_id}",
        kind=kind or "unknown",
        status="failed",
        at=rfc3339(now),
        account=account,
        reason=reason,
    )
