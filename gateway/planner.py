"""The planner: the scheduling service's appointment, order and subscription jobs become
e-mail and SMS notification jobs, at the times the planning rules give."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from gateway.clock import Clock, rfc3339
from gateway.directory import AccountDirectory
from gateway.errors import PermanentFailure
from gateway.events import Event
from gateway.jobs import (
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
from gateway.planning import (
    Planned,
    Skipped,
    plan_booking,
    plan_cancellation,
    plan_reschedule,
    plan_resend,
)
from gateway.queue import JobQueue

PLANS = {
    "appointment.booked": plan_booking,
    "appointment.rescheduled": plan_reschedule,
    "appointment.cancelled": plan_cancellation,
    "appointment.confirmation.resend": plan_resend,
}
# Counter field of an appointment's sequence hash (the others map job ids to their number).
LAST_SEQUENCE = "last"


def notification_id(source: str, kind: str, index: int, channel: str, recipient: str) -> str:
    """The id of one notification: the same for the same planning job, whatever the number
    of times that job is run, so a notification is enqueued once (idempotency)."""
    return f"{source}/{kind}/{index}/{channel}/{recipient}"


class Planner:
    """Handles the scheduling service's jobs (see PLANS and the order and subscription kinds)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        queue: JobQueue,
        directory: AccountDirectory,
        clock: Clock,
        history_ttl: Callable[[], int],
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.queue = queue
        self.directory = directory
        self.clock = clock
        self.history_ttl = history_ttl

    async def handle(self, job: Job, attempt: int) -> list[Event]:
        if isinstance(job, AppointmentJob):
            return await self._appointment(job)
        return await self._purchase(job)

    # Appointments

    async def _appointment(self, job: AppointmentJob) -> list[Event]:
        account = await self.directory.get(job.account)
        if account is None:
            raise PermanentFailure(f"unknown account '{job.account}'")
        appointment = job.appointment
        now = datetime.fromtimestamp(self.clock.now(), UTC)
        dropped: list[str] = []
        if job.kind in ("appointment.rescheduled", "appointment.cancelled"):
            # Nothing planned for the old time, nor after a cancellation.
            dropped = await self.queue.cancel_appointment(appointment.id)
        await self._track_booking(job)
        plan = PLANS[job.kind](account, appointment, now)
        sequence = await self._sequence(job)
        context = {
            "appointment": {**json.loads(appointment.model_dump_json()), "sequence": sequence}
        }
        jobs: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = [{"status": "dropped", "job": i} for i in dropped]
        events: list[Event] = []
        for item in plan:
            if isinstance(item, Skipped):
                events.append(self._skipped(job, item))
                continue
            for recipient, child in self._notifications(job, item, context, now):
                jobs.append(child)
                history.append(
                    {
                        "status": "planned",
                        "job": child["id"],
                        "kind": item.kind,
                        "channel": item.channel,
                        "recipient": recipient,
                        "send_at": rfc3339(item.at.timestamp()),
                    }
                )
        await self._enqueue(jobs)
        await self._record(appointment.id, job.id, history)
        return events

    def _notifications(
        self, job: AppointmentJob, item: Planned, context: dict[str, Any], now: datetime
    ) -> list[tuple[str, dict[str, Any]]]:
        """The jobs that carry one planned notification: an e-mail to each client address,
        or one text to the first client with a phone (one SMS reminder per appointment)."""
        appointment = job.appointment
        base: dict[str, Any] = {
            "v": 1,
            "account": job.account,
            "appointment": appointment.id,
            "template": item.kind,
            "context": context,
        }
        if item.at > now:
            base["send_at"] = item.at.isoformat()
        if item.only_if_not_rebooked:
            base["context"] = {**context, "only_if_not_rebooked": True}
        if item.channel == "sms":
            phone = next((c.phone for c in appointment.clients if c.phone), None)
            if phone is None:
                return []
            child_id = notification_id(job.id, item.kind, item.index, "sms", phone)
            return [(phone, {**base, "id": child_id, "kind": "sms.send", "to": phone})]
        children = []
        for client in appointment.clients:
            for address in client.emails:
                child_id = notification_id(job.id, item.kind, item.index, "email", address)
                child = {**base, "id": child_id, "kind": "email.send", "to": [address]}
                children.append((address, child))
        return children

    async def _sequence(self, job: AppointmentJob) -> int:
        """The calendar invitation's SEQUENCE: raised once by each job that moves or
        cancels the appointment, never lower than what the scheduling service says."""
        key = self.keys.sequence(job.appointment.id)
        known: Any = await self.redis.hget(key, job.id)
        if known is None:
            step = 0 if job.kind == "appointment.booked" else 1
            raised = await self.redis.hincrby(key, LAST_SEQUENCE, step)
            await self.redis.hsetnx(key, job.id, raised)
            known = await self.redis.hget(key, job.id)
            await self.redis.expire(key, self.history_ttl())
        return max(int(known or 0), job.appointment.sequence)

    async def _track_booking(self, job: AppointmentJob) -> None:
        """Remember each client's booked appointments, for follow-ups sent only if the
        client has not booked again (checked when they are due)."""
        appointment = job.appointment
        async with self.redis.pipeline(transaction=False) as pipe:
            for address in _addresses(appointment.clients):
                key = self.keys.bookings(job.account, address)
                if job.kind == "appointment.cancelled":
                    pipe.zrem(key, appointment.id)
                else:
                    pipe.zadd(key, {appointment.id: appointment.start.timestamp()})
                pipe.expire(key, self.history_ttl())
            await pipe.execute()

    # Orders and subscriptions: always sent, but for what PRODUCT.md exempts.

    async def _purchase(self, job: Job) -> list[Event]:
        account = await self.directory.get(job.account)
        if account is None:
            raise PermanentFailure(f"unknown account '{job.account}'")
        reason: str | None = None
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
        await self._enqueue(
            [
                {
                    "v": 1,
                    "id": notification_id(job.id, template, 0, "email", address),
                    "kind": "email.send",
                    "account": job.account,
                    "to": [address],
                    "template": template,
                    "context": context,
                }
                for address in _addresses([client])
            ]
        )
        return []

    # Writing

    async def _enqueue(self, jobs: Sequence[dict[str, Any]]) -> None:
        # Concurrent calls leave for Redis together (the queue batches its scripts).
        await asyncio.gather(*(self.queue.enqueue(parse_job(json.dumps(j))) for j in jobs))

    async def _record(self, appointment: str, source: str, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        key = self.keys.history(appointment)
        at = rfc3339(self.clock.now())
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                event = {"at": at, "source": source, "appointment": appointment, **entry}
                pipe.xadd(key, {"event": json.dumps(event, ensure_ascii=False)})
            pipe.expire(key, self.history_ttl())
            await pipe.execute()

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
    return list(dict.fromkeys(address.lower() for c in clients for address in c.emails))


def _plain(model: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(model.model_dump_json(exclude_none=True))
    return result
