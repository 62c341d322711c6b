"""The planner: the scheduling service's appointment, order and subscription jobs become
e-mail and SMS notification jobs, at the times the planning rules give."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from redis.asyncio import Redis

from gateway.clock import Clock, rfc3339
from gateway.deadlines import at_once_expires_ms, purchase_expires_ms, waiting_late_ms
from gateway.directory import AccountDirectory
from gateway.errors import PermanentFailure
from gateway.events import Event
from gateway.handlers import ARRIVAL
from gateway.history import record_dropped
from gateway.jobs import (
    Appointment,
    AppointmentJob,
    Client,
    Job,
    OrderJob,
    SubscriptionCancelledJob,
    SubscriptionPaidJob,
    SubscriptionRenewalUpcomingJob,
    parse_job,
)
from gateway.keys import Keys
from gateway.notification_kinds import AppointmentKind, Channel
from gateway.notifications import Waiting, entry_middle, notification_job
from gateway.ordering import Applied, order_key, position
from gateway.phone_numbers import NumberRefused, to_e164
from gateway.planning import Skipped, Timetable, Timetables, plan_resend
from gateway.queue import JobQueue, NotificationPlan
from gateway.settings import DeadlinesSettings


@dataclass(frozen=True, slots=True)
class Layout:
    """A timetable as the planner uses it (made once for most, see planning.Timetables):
    what is skipped, what is made at once (kind, channel, index, only if not rebooked),
    and what waits (microseconds after the start, the entry's middle with its deadline,
    channel)."""

    skipped: tuple[Skipped, ...]
    at_once: tuple[tuple[AppointmentKind, Channel, int, bool], ...]
    waiting: tuple[tuple[int, str, Channel], ...]
    # Whether an SMS goes out, at once or later: the client's number is needed.
    texts: bool


def lay_out(deadlines: DeadlinesSettings, timetable: Timetable) -> Layout:
    """The layout of a timetable, its waiting entries with the deadlines the settings give."""
    skipped, at_once, waiting, texts = [], [], [], False
    for item in timetable:
        if isinstance(item, Skipped):
            skipped.append(item)
            continue
        kind, channel, index, flag, after_start = item
        texts = texts or channel == "sms"
        if after_start is None:
            at_once.append((kind, channel, index, flag))
        else:
            late = waiting_late_ms(kind, after_start, deadlines)
            middle = entry_middle(kind, index, channel, flag, late)
            waiting.append((after_start, middle, channel))
    return Layout(tuple(skipped), tuple(at_once), tuple(waiting), texts)


class Planner:
    """Handles the scheduling service's jobs (see planning.PLANS and the order and
    subscription kinds)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        queue: JobQueue,
        directory: AccountDirectory,
        clock: Clock,
        history_ttl: Callable[[], int],
        deadlines: Callable[[], DeadlinesSettings],
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.queue = queue
        self.directory = directory
        self.clock = clock
        self.history_ttl = history_ttl
        self.deadlines = deadlines
        self._laid_out_with = deadlines()
        self.timetables = Timetables(partial(lay_out, self._laid_out_with))

    def _timetables(self, deadlines: DeadlinesSettings) -> Timetables[Layout]:
        """The timetables, laid out anew when the deadline settings changed (a reload)."""
        if deadlines != self._laid_out_with:
            self._laid_out_with = deadlines
            self.timetables = Timetables(partial(lay_out, deadlines))
        return self.timetables

    async def handle(self, job: Job, attempt: int) -> list[Event]:
        if isinstance(job, AppointmentJob):
            return await self._appointment(job)
        return await self._purchase(job)

    # Appointments

    async def _appointment(self, job: AppointmentJob) -> list[Event]:
        account = self.directory.known(job.account) or await self.directory.get(job.account)
        if account is None:
            raise PermanentFailure(f"unknown account '{job.account}'")
        appointment, kind = job.appointment, job.kind
        now = datetime.fromtimestamp(self.clock.now(), UTC)
        if kind == "appointment.confirmation.resend":
            return await self._resend(job, now)
        # Ordered by what the scheduling service says, not by the gateway's own SEQUENCE. A
        # job no worker claimed (the planner called on its own) arrives as it is planned.
        arrival = ARRIVAL.get() or await self.queue.arrival_now()
        order = order_key(kind, appointment.sequence, arrival)
        # Nothing stays planned for the old time, nor after a cancellation.
        replace = kind != "appointment.booked"
        if replace:
            sequence = await self._sequence(job)
            if sequence != appointment.sequence:
                appointment = appointment.model_copy(update={"sequence": sequence})
        deadlines = self.deadlines()
        start, layout = self._timetables(deadlines).of(kind, account, appointment, now)
        now_ms = int(self.clock.now() * 1000)
        context = appointment_context(appointment)
        clients = _addresses(appointment.clients)
        account_id, source = job.account, job.id
        events = [self._skipped(job, skipped) for skipped in layout.skipped]
        texted = self._phone(job, account.country, events) if layout.texts else None
        recipients = {"email": clients, "sms": [texted] if texted else []}
        made_now = [
            notification_job(
                source, account_id, appointment.id, context, notice, index, channel, recipient,
                flag, at_once_expires_ms(notice, start // 1000, now_ms, deadlines),
            )
            for notice, channel, index, flag in layout.at_once
            for recipient in recipients[channel]
        ]  # fmt: skip
        entries: list[str] = []
        dues: list[int] = []
        for after_start, middle, channel in layout.waiting:
            due = (start + after_start) // 1000
            head = f"{due}{middle}"
            for recipient in recipients[channel]:
                entries.append(head + recipient)
                dues.append(due)
        planning = await self.queue.plan_notifications(
            NotificationPlan(
                appointment=appointment.id,
                account=account_id,
                source=source,
                context=context,
                replace=replace,
                ttl=self.history_ttl(),
                clients=clients,
                start=start / 1e6,
                cancelled=kind == "appointment.cancelled",
                entries=entries,
                dues=dues,
                made_now=made_now,
                texted=texted,
                order=order,
            )
        )
        if planning.applied is not None:
            return [self._changes_nothing(job, planning.applied, arrival)]
        if planning.dropped or planning.replaced:
            await self._record_dropped(job, planning.dropped, planning.replaced)
        return events

    async def _resend(self, job: AppointmentJob, now: datetime) -> list[Event]:
        """The confirmation again, now; what the appointment has planned is left as it is."""
        account = await self.directory.get(job.account)
        assert account is not None
        sequence = await self._sequence(job)
        details = job.appointment.model_copy(update={"sequence": sequence})
        context = b'{"appointment":' + details.model_dump_json().encode() + b"}"
        start_ms = int(job.appointment.start.timestamp() * 1000)
        expires = at_once_expires_ms("confirmation", start_ms, int(now.timestamp() * 1000),
                                     self.deadlines())  # fmt: skip
        events: list[Event] = []
        jobs: list[tuple[str, bytes]] = []
        for item in plan_resend(account, job.appointment, now):
            if isinstance(item, Skipped):
                events.append(self._skipped(job, item))
                continue
            jobs += [
                notification_job(
                    job.id, job.account, job.appointment.id, context, item.kind, 0, "email",
                    address, False, expires,
                )
                for address in _addresses(job.appointment.clients)
            ]  # fmt: skip
        if jobs:
            # Not for a cancelled appointment, nor the details an event since has changed.
            arrival = ARRIVAL.get() or await self.queue.arrival_now()
            place = position(job.appointment.sequence, arrival)
            applied = await self.queue.resend_confirmation(job.appointment.id, place, jobs)
            if applied is not None:
                return [self._changes_nothing(job, applied, arrival)]
        return events

    def _phone(self, job: AppointmentJob, country: str, events: list[Event]) -> str | None:
        """The first client's phone, in E.164, for the one SMS reminder of an appointment;
        a number that is not a valid mobile one is refused now, with its reason."""
        phone = next((c.phone for c in job.appointment.clients if c.phone), None)
        if phone is None:
            return None
        try:
            return to_e164(phone, country)
        except NumberRefused as exc:
            events.append(
                Event(
                    job=job.id,
                    kind="reminder",
                    status="failed",
                    at=rfc3339(self.clock.now()),
                    account=job.account,
                    appointment=job.appointment.id,
                    channel="sms",
                    recipient=phone,
                    reason=exc.reason,
                )
            )
            return None

    async def _record_dropped(
        self, job: AppointmentJob, dropped: Sequence[str], replaced: Sequence[Waiting]
    ) -> None:
        notifications: list[dict[str, Any]] = [{"job": job_id} for job_id in dropped]
        notifications += [waiting.fields() for waiting in replaced]
        await record_dropped(
            self.redis,
            self.keys,
            job.appointment.id,
            job.id,
            notifications,
            rfc3339(self.clock.now()),
            self.history_ttl(),
        )

    async def _sequence(self, job: AppointmentJob) -> int:
        """The calendar invitation's SEQUENCE: raised once by each job that moves or
        cancels the appointment, never lower than what the scheduling service says."""
        changed = job.kind in ("appointment.rescheduled", "appointment.cancelled")
        # Kept until the start, however far ahead, then as long as a history: a later
        # move must raise the number the clients' calendars have.
        ahead = max(0, int(job.appointment.start.timestamp() - self.clock.now()))
        known = await self.queue.sequence(
            job.appointment.id, job.id, 1 if changed else 0, self.history_ttl() + ahead
        )
        return max(known, job.appointment.sequence)

    # Orders and subscriptions: always sent, but for what PRODUCT.md exempts.

    async def _purchase(self, job: Job) -> list[Event]:
        account = await self.directory.get(job.account)
        if account is None:
            raise PermanentFailure(f"unknown account '{job.account}'")
        reason: str | None = None
        # Neither an order nor a charge says when it happened: the job is handled then.
        handled_ms = int(self.clock.now() * 1000)
        expires = purchase_expires_ms(handled_ms, self.deadlines())
        if isinstance(job, OrderJob):
            template, client = "order", job.order.client
            context: dict[str, Any] = {"order": _plain(job.order), "product": job.product}
        elif isinstance(job, SubscriptionPaidJob):
            template, client = "subscription_paid", job.subscription.client
            context = {"subscription": _plain(job.subscription)}
            if job.first_charge:
                reason = "no payment notice for the first purchase"
        elif isinstance(job, SubscriptionRenewalUpcomingJob):
            template, client = "subscription_renewal_reminder", job.subscription.client
            context = {"subscription": _plain(job.subscription)}
            if job.subscription.renews_at is not None:
                # Not after the renewal.
                expires = int(job.subscription.renews_at.timestamp() * 1000)
            if not account.notifications.subscription_renewal_reminder:
                reason = "renewal reminders turned off"
        elif isinstance(job, SubscriptionCancelledJob):
            template, client = "subscription_cancelled", job.subscription.client
            context = {"subscription": _plain(job.subscription), "by": job.by}
            if job.by == "owner":
                reason = "cancelled by the owner: the client is not notified"
        else:
            raise PermanentFailure(f"the planner does not do '{job.kind}' jobs")
        if reason is not None:
            return [
                Event(job.id, template, "skipped", rfc3339(self.clock.now()), job.account,
                      channel="email", reason=reason)
            ]  # fmt: skip
        text = json.dumps(context, separators=(",", ":")).encode()
        jobs = [
            notification_job(
                job.id, job.account, None, text, template, 0, "email", address, False, expires
            )
            for address in _addresses([client])
        ]
        # Read back as any job is: what the upstream sent must make a valid `email.send`.
        # Concurrent calls leave for Redis together (the queue batches its scripts).
        await asyncio.gather(*(self.queue.enqueue(parse_job(made)) for _, made in jobs))
        return []

    # Events

    def _changes_nothing(
        self, job: AppointmentJob, applied: tuple[str, str], arrival: str
    ) -> Event:
        """The one event of a job that came before the event the appointment's plan follows
        (or after its cancellation): nothing of it is planned nor sent."""
        event = Applied.read(*applied)
        return Event(
            job=job.id,
            kind=job.kind,
            status="skipped",
            at=rfc3339(self.clock.now()),
            account=job.account,
            appointment=job.appointment.id,
            reason=event.why_not(job.kind, job.appointment.sequence, arrival),
        )

    def _skipped(self, job: AppointmentJob, item: Skipped) -> Event:
        return Event(
            job=job.id,
            kind=item.kind,
            status="skipped",
            at=rfc3339(self.clock.now()),
            account=job.account,
            appointment=job.appointment.id,
            channel=item.channel,
            reason=item.reason,
        )


def _addresses(clients: Sequence[Client]) -> list[str]:
    addresses: list[str] = []
    for client in clients:
        for address in client.emails:
            lowered = address.lower()
            if lowered not in addresses:
                addresses.append(lowered)
    return addresses


def appointment_context(appointment: Appointment) -> bytes:
    """The context (JSON, UTF-8) every notification job of the appointment carries as is,
    serialised once per planning, without the fields left to their defaults (the handlers
    read it back into the model). Pydantic's own serializer, without model_dump_json's
    keyword handling, which costs a quarter of the call; kept in bytes, as Redis takes it
    (a text would be decoded here and encoded again to be sent)."""
    serialized = appointment.__pydantic_serializer__.to_json(appointment, exclude_defaults=True)
    return b'{"appointment":' + serialized + b"}"


def _plain(model: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(model.model_dump_json(exclude_none=True))
    return result
