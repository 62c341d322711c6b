"""`email.send` jobs: render, compose, sign and relay one message per recipient."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

from redis.asyncio import Redis

from gateway import metrics
from gateway.account import Account
from gateway.backoff import retry_delay
from gateway.bookings import booked_from
from gateway.bounce_classes import BounceClass
from gateway.bounce_matching import Rule
from gateway.clock import Clock, rfc3339
from gateway.deadlines import expired_reason, seconds_left, too_late_to_retry
from gateway.delivered import DeliveredRecipients
from gateway.directory import AccountDirectory
from gateway.errors import PermanentFailure, TemporaryFailure
from gateway.events import Event, Status
from gateway.jobs import Appointment, EmailJob, Job
from gateway.keys import Keys
from gateway.message_records import MessageRecord, record_message
from gateway.outage import PROCESS
from gateway.settings import Settings
from outbound.bounces import judge, settle
from outbound.builder import MessageBuilder, job_appointment, job_kind
from outbound.headers import AddressRefused
from outbound.in_flight import InFlightMarks
from outbound.relay import OutgoingMessage, RecipientResult, RelayTransport
from outbound.suppression import SuppressionList, normalise


@dataclass(frozen=True, slots=True)
class Outcome:
    """One recipient's result, as an event and whether it is final."""

    event: Event
    final: bool


def relay_elapsed(attempts: int, initial: float, maximum: float) -> float:
    """Seconds spent waiting between the first attempt and attempt `attempts + 1`."""
    return sum(retry_delay(n, initial, maximum) for n in range(1, attempts + 1))


# What the run after one interrupted in the middle of sending (its worker died, or it
# timed out) records.
TAKEN_BY_INTERRUPTED = "taken by the relay at an interrupted earlier run"
SENT_AGAIN = (
    "sent again after an earlier run was interrupted while sending:"
    " the relay may have both copies (same Message-ID)"
)


class EmailHandler:
    """Turns an `email.send` job into one signed message per recipient, relayed."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        directory: AccountDirectory,
        settings: Callable[[], Settings],
        builder: MessageBuilder,
        transport: RelayTransport,
        clock: Clock,
        bounce_rules: Callable[[], Sequence[Rule]],
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.bounce_rules = bounce_rules
        self.redis = redis
        self.keys = keys
        self.directory = directory
        self.settings = settings
        self.builder = builder
        self.transport = transport
        # The transport is made once, from the settings the process started with.
        self.transport_name = settings().relay.transport
        self.clock = clock
        self.jitter = jitter
        self.suppressions = SuppressionList(redis, keys, clock)
        self.delivered = DeliveredRecipients(redis, keys)
        self.in_flight = InFlightMarks(redis, keys)
        # One message signed at a time, after the loop has run what was ready: signing
        # queued behind the signing of every job in hand kept replies waiting, a relay's
        # 250 among them, whose record is the window in which a worker's death makes a
        # second copy.
        self._signing = asyncio.Semaphore(1)

    async def handle(self, job: Job, attempt: int) -> list[Event]:
        if not isinstance(job, EmailJob):
            raise PermanentFailure(f"the e-mail handler does not do '{job.kind}' jobs")
        account = await self.directory.get(job.account)
        if account is None:
            raise PermanentFailure(f"unknown account '{job.account}'")
        kind = job_kind(job)
        appointment = job_appointment(job)
        done: set[str] = set()
        if attempt > 1:
            # Their outcomes were recorded with the retry.
            done = await self.delivered.settled(job.id)
        recipients = [r for r in dict.fromkeys(normalise(a) for a in job.to) if r not in done]
        outcomes = await asyncio.gather(
            *(self._send_one(job, account, kind, appointment, r) for r in recipients)
        )
        final = [o.event for o in outcomes if o.final]
        waiting = [o.event for o in outcomes if not o.final]
        if not waiting:
            return final
        return await self._defer(job, attempt, final, waiting)

    async def _defer(
        self, job: EmailJob, attempt: int, final: list[Event], waiting: list[Event]
    ) -> list[Event]:
        """Retry the recipients not reached yet on the relay's schedule, or give them
        up as bounced once the message has outlived relay.max_lifetime, or as expired when
        the next attempt would come after the job's deadline."""
        relay = self.settings().relay
        initial, maximum = relay.retry_initial.total_seconds(), relay.retry_max.total_seconds()
        elapsed = relay_elapsed(attempt, initial, maximum)
        if elapsed >= relay.max_lifetime.total_seconds():
            expired = f"undelivered after {attempt} attempts"
            return final + [
                replace(e, status="bounced", reason=f"{expired}: {e.reason}") for e in waiting
            ]
        delay = retry_delay(attempt, initial, maximum, self.jitter())
        now = self.clock.now()
        left = seconds_left(job, now)
        if left is not None and delay > left:
            expired = too_late_to_retry(job)
            return final + [
                replace(e, status="expired", reason=f"{expired} ({e.reason})") for e in waiting
            ]
        if final:
            # Recipients already done are skipped when the job comes back.
            await self.delivered.record(
                job.id, {e.recipient: e.status for e in final if e.recipient}, self._kept()
            )
        reason = "; ".join(f"{e.recipient}: {e.reason}" for e in waiting)
        # The relay's schedule runs past queue.max_attempts, to relay.max_lifetime from
        # the first attempt (`elapsed` counts this wait too), and never past the deadline.
        ends = now + relay.max_lifetime.total_seconds() - (elapsed - delay)
        if left is not None:
            ends = min(ends, now + left)
        # Each waiting recipient's own `deferred` event (its reply and class) goes out too.
        events = [*final, *waiting]
        raise TemporaryFailure(reason, retry_after=delay, events=events, give_up_at=ends)

    async def _send_one(
        self,
        job: EmailJob,
        account: Account,
        kind: str,
        appointment: Appointment | None,
        address: str,
    ) -> Outcome:
        """One recipient's outcome: an address the composer refuses fails alone, not the
        other recipients' messages (a template error still fails the whole job)."""
        try:
            outcome = await self._send(job, account, kind, appointment, address)
        except AddressRefused as exc:
            outcome = self._outcome(job, account, address, "failed", exc.reason, None)
        if outcome.event.status != "sent":
            # Settled, and nothing is out to that recipient: the next run (a retry) has no
            # copy to fear. A run that dies, hangs or times out leaves the mark.
            await self.in_flight.settle(job.id, address)
        return outcome

    async def _send(
        self,
        job: EmailJob,
        account: Account,
        kind: str,
        appointment: Appointment | None,
        address: str,
    ) -> Outcome:
        settings = self.settings()
        identity = self.builder.identity(account)
        record = MessageRecord(
            job=job.id,
            account=account.id,
            kind=kind,
            recipient=address,
            sender_domain=identity.sender_domain,
            appointment=job.appointment_id or (appointment.id if appointment else ""),
            calendar=appointment.calendar if appointment else "",
        )
        # One round trip: what may stop this message, the mark of a send begun (kept if
        # one is there already: an earlier run was interrupted), and the
        # message's record for bounces and replies (written before sending, since a
        # bounce can come back at once).
        rebooked = appointment is not None and bool(job.context.get("only_if_not_rebooked"))
        async with self.redis.pipeline(transaction=False) as pipe:
            delivered = self.delivered.lookup(pipe, job.id, address)
            blocking = self.suppressions.lookup(pipe, kind, address, account.id)
            begun = self.in_flight.begin(pipe, job.id, address, identity.token, self._kept())
            record_message(
                pipe,
                self.keys,
                identity.token,
                record,
                int(settings.inbound.message_id_ttl.total_seconds()),
            )
            booked = None
            if rebooked and appointment is not None:
                # Checked now that it is due, as PRODUCT.md says, not when it was planned.
                booked = booked_from(
                    pipe, self.keys, account.id, address, appointment.start.timestamp()
                )
            replies = await pipe.execute()
        earlier, mark = delivered(replies), begun(replies)
        if earlier:
            # An attempt interrupted after the server took the message (the worker died
            # before recording it): sending again would be a second copy. If that was
            # itself a second send, the history says so as the lost run would have.
            reason = "sent by an interrupted earlier attempt"
            if mark.again:
                reason = f"{reason}; {SENT_AGAIN}"
            return self._outcome(job, account, address, "sent", reason, earlier)
        if booked is not None and appointment is not None and booked(replies) - {appointment.id}:
            return self._outcome(
                job, account, address, "skipped", "the client has booked again since", None
            )
        blocked = blocking(replies)
        if blocked is not None:
            return self._outcome(
                job,
                account,
                address,
                "suppressed",
                blocked.reason,
                None,
                bounce_class=blocked.bounce_class,
            )
        interrupted = mark.token != identity.token
        # Past its deadline, whatever delayed it (a backlog, an outage, a retry), nothing is
        # sent; after an interrupted send, once the relay is found not to have it.
        expired = expired_reason(job, self.clock.now())
        if expired is not None and not interrupted:
            return self._outcome(job, account, address, "expired", expired, None)
        if interrupted:
            # The same message as the interrupted send, Message-ID included: a mailbox
            # that got both can tell them for one.
            identity = self.builder.identity(account, mark.token)
            if not mark.again:
                await self.in_flight.begun_again(job.id, address, mark.token)
        spec = await self.builder.spec(job, account, appointment, address, identity)
        if spec is None:
            return self._outcome(
                job, account, address, "skipped", "its template renders empty", None
            )
        async with self._signing:
            # What was ready on the loop runs first (see __init__).
            await asyncio.sleep(0)
            message = self.builder.signed(spec, identity)
        envelope = OutgoingMessage(
            identity.bounce_address, (address,), message, require_tls=account.hipaa
        )
        if interrupted and await self.transport.has(envelope):
            result = RecipientResult(address, "sent", 250, TAKEN_BY_INTERRUPTED, None)
            return await self._result(job, account, result, identity.message_id)
        if expired is not None:
            return self._outcome(job, account, address, "expired", expired, None)
        started = time.perf_counter()
        [result] = await self.transport.deliver(envelope)
        metrics.observe_relay(self.transport_name, result.status, time.perf_counter() - started)
        if interrupted and result.status == "sent":
            result = replace(result, response=f"{result.response}; {SENT_AGAIN}")
        return await self._result(job, account, result, identity.message_id)

    async def _result(
        self, job: EmailJob, account: Account, result: RecipientResult, message_id: str
    ) -> Outcome:
        detail = f"{result.code} {result.response}".strip() if result.code else result.response
        if result.status == "sent":
            # Recorded at once, for an attempt that may yet be interrupted (see _send);
            # the relay has the message, so Redis away is waited out, not a failure.
            await PROCESS.retried("e-mail handler", partial(self._sent, job, result, message_id))
            return self._outcome(job, account, result.recipient, "sent", detail, message_id)
        verdict = judge(
            result.code, result.response, result.status == "bounced", self.bounce_rules()
        )
        await settle(
            self.suppressions,
            self.settings().suppression,
            verdict,
            result.recipient,
            detail,
            account.id,
            self.clock.now(),
        )
        retried = verdict.action == "retry"
        return self._outcome(
            job,
            account,
            result.recipient,
            "deferred" if retried else "bounced",
            detail,
            message_id,
            final=not retried,
            bounce_class=verdict.bounce_class,
        )

    async def _sent(self, job: EmailJob, result: RecipientResult, message_id: str) -> None:
        await self.delivered.record(job.id, {result.recipient: message_id}, self._kept())

    def _kept(self) -> int:
        """How long a job's records are kept: as long as it may come back (the relay's
        schedule), then a day."""
        return int(self.settings().relay.max_lifetime.total_seconds()) + 86400

    def _outcome(
        self,
        job: EmailJob,
        account: Account,
        address: str,
        status: Status,
        reason: str | None,
        message_id: str | None,
        final: bool = True,
        bounce_class: BounceClass | None = None,
    ) -> Outcome:
        event = Event(
            job=job.id,
            kind=job.template or job.kind,
            status=status,
            at=rfc3339(self.clock.now()),
            account=account.id,
            appointment=job.appointment_id,
            channel="email",
            recipient=address,
            reason=reason,
            message_id=message_id,
            bounce_class=bounce_class,
        )
        return Outcome(event, final)
