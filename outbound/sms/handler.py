"""`sms.send` jobs: check the number and the opt-outs, compose the text, hand it to the provider
once (a text whose answer was lost is looked for there first)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from redis.asyncio import Redis

from gateway import metrics
from gateway.account import Account
from gateway.clock import Clock, rfc3339
from gateway.deadlines import expired_reason, seconds_left, too_late_to_retry
from gateway.directory import AccountDirectory
from gateway.errors import PermanentFailure, TemporaryFailure
from gateway.events import Event, Status
from gateway.jobs import Job, SmsJob
from gateway.keys import Keys
from gateway.outage import PROCESS
from gateway.phone_numbers import NumberRefused, to_e164
from gateway.settings import Settings
from gateway.sms_provider import (
    ProviderContext,
    ProviderError,
    SmsProvider,
    TextMessage,
    sent_lookup,
)
from outbound.owner_templates import OwnerTemplates
from outbound.sms.compose import ComposedText, TextRefused, compose_text
from outbound.sms.optouts import SmsOptOuts
from outbound.sms.records import SentText, SmsRecords
from outbound.sms.retry_after import bounded_retry_after
from outbound.sms.segments import TextTooLong, check_length


class SmsHandler:
    """One text per `sms.send` job, to one number, at most once: a text whose provider's
    answer was lost is looked for at the provider before it is sent again."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        directory: AccountDirectory,
        settings: Callable[[], Settings],
        provider: Callable[[], SmsProvider],
        context: ProviderContext,
        clock: Clock,
        templates: Callable[[], OwnerTemplates],
    ) -> None:
        self.templates = templates
        self.directory = directory
        self.settings = settings
        self.provider = provider
        self.context = context
        self.clock = clock
        self.optouts = SmsOptOuts(
            redis, keys, clock, lambda: int(settings().queue.history_ttl.total_seconds())
        )
        self.records = SmsRecords(
            redis, keys, lambda: int(settings().inbound.message_id_ttl.total_seconds())
        )

    async def handle(self, job: Job, attempt: int) -> list[Event]:
        if not isinstance(job, SmsJob):
            raise PermanentFailure(f"the SMS handler does not do '{job.kind}' jobs")
        account = await self.directory.get(job.account)
        if account is None:
            raise PermanentFailure(f"unknown account '{job.account}'")
        try:
            number = to_e164(job.to, account.country)
        except NumberRefused as exc:
            return [self._event(job, job.to, "failed", exc.reason)]
        reference = f"{job.id}/{number}"
        state = await self.records.state(job.id, number, reference)
        if state.sent:
            # The provider took it at an attempt whose worker died before recording it.
            return [
                self._event(
                    job, number, "sent", "sent by an interrupted earlier attempt", state.sent
                )
            ]
        if state.opted_out and state.in_flight_since is None:
            return [self._event(job, number, "suppressed", "the number answered STOP")]
        try:
            composed = await compose_text(job, account, self.templates())
            segments = check_length(composed.text)
        except (TextRefused, TextTooLong) as exc:
            return [self._event(job, number, "failed", str(exc))]
        message = TextMessage(
            to=number,
            text=composed.text,
            reference=reference,
            encoding=segments.encoding,
            parts=segments.parts,
            status_callback=self.context.callback_url("status"),
            valid_for=_whole_seconds(seconds_left(job, self.clock.now())),
        )
        text = SentText(job.id, account.id, job.appointment_id, number, job.template or job.kind)
        described = _describe(message, composed)
        provider = self.provider()
        if state.in_flight_since is not None:
            found = await self._look_up(
                text, message, state.in_flight_since, state.reported, provider
            )
            if found is not None:
                return await self._taken(text, message, found[0], f"{described}; {found[1]}")
            if state.opted_out:
                await self.records.not_in_flight(job.id, number, reference)
                return [self._event(job, number, "suppressed", "the number answered STOP")]
        now = self.clock.now()
        # Checked once nothing is out to the number (a text in flight was looked for above):
        # past its deadline, whatever delayed it, it is not sent.
        expired = expired_reason(job, now)
        if expired is not None:
            if state.in_flight_since is not None:
                await self.records.not_in_flight(job.id, number, reference)
            return [self._event(job, number, "expired", expired)]
        made = await self.records.in_flight(text, reference, now)
        try:
            accepted = await provider.send(message)
        except ProviderError as exc:
            if exc.temporary and exc.maybe_sent:
                since = now if state.in_flight_since is None else state.in_flight_since
                return await self._lost(text, message, since, provider, described, exc, attempt)
            return await self._refused(job, account, text, reference, exc, made, attempt)
        return await self._taken(text, message, accepted.provider_id, described)

    async def _lost(
        self,
        text: SentText,
        message: TextMessage,
        since: float,
        provider: SmsProvider,
        described: str,
        exc: ProviderError,
        attempt: int,
    ) -> list[Event]:
        """The answer was lost: the next attempt asks the provider before sending again,
        or this one does if it is the last."""
        lost = TemporaryFailure(
            f"{text.number}: {exc}; the text may already be out: before sending it again, the"
            f" next attempt asks {self.context.name} whether it took it"
        )
        if attempt < self.settings().queue.max_attempts:
            raise lost
        reported = (await self.records.state(text.job, text.number, message.reference)).reported
        found = await self._look_up(text, message, since, reported, provider)
        if found is None:
            raise lost
        return await self._taken(text, message, found[0], f"{described}; {found[1]}")

    async def _look_up(
        self,
        text: SentText,
        message: TextMessage,
        since: float,
        reported: bool,
        provider: SmsProvider,
    ) -> tuple[str, str] | None:
        """The provider's id of a text an earlier request sent without hearing back, and
        how it was found, if the provider has it; None if it has not (it is sent again)."""
        name = self.context.name
        earlier = "sent by an earlier attempt whose answer was lost"
        if reported:
            # A delivery report named it by its reference: the provider took it under that.
            return message.reference, f"{earlier} (a delivery report of {name} names it)"
        lookup = sent_lookup(provider)
        if lookup is None:
            await self.records.not_in_flight(text.job, text.number, None)
            raise PermanentFailure(
                f"{text.number}: the answer of {name} to an earlier attempt was lost, and {name}"
                " cannot be asked whether it took the text: not sent again, as it may already"
                " be out (replaying this dead letter sends it)"
            )
        try:
            candidates = await lookup.find_sent(message, since)
        except ProviderError as exc:
            raise TemporaryFailure(
                f"{text.number}: the text may already be out (an earlier attempt's answer was"
                f" lost) and {name} could not be asked whether it took it: {exc}; not sent"
                " again before it can be"
            ) from exc
        owners = await self.records.owners([c.provider_id for c in candidates])
        for candidate, owner in zip(candidates, owners, strict=True):
            # another job's identical text to the same number is not this one
            if owner is None or owner == (text.job, text.number):
                return candidate.provider_id, f"found at {name}: {earlier}"
        return None

    async def _taken(
        self, text: SentText, message: TextMessage, provider_id: str, reason: str
    ) -> list[Event]:
        """The text the provider took, recorded under `provider_id` (Redis away is waited
        out, not a failure: the provider has it), with the report that came for it
        before, if one did."""
        metrics.record_sms(self.context.name, message.encoding, message.parts)
        record = partial(self.records.sent, text, provider_id, message.reference)
        early = await PROCESS.retried("SMS handler", record)
        events = [self._event(text, text.number, "sent", reason, provider_id)]
        if early is not None:
            status: Status = "delivered" if early.delivered else "failed"
            events.append(
                self._event(text, text.number, status, early.detail, provider_id, early.at)
            )
        return events

    async def _refused(
        self,
        job: SmsJob,
        account: Account,
        text: SentText,
        reference: str,
        exc: ProviderError,
        made: bool,
        attempt: int,
    ) -> list[Event]:
        number = text.number
        # The provider said no to this request: what it marked in flight is not.
        if made:
            await self.records.not_in_flight(job.id, number, reference)
        if exc.temporary:
            queue = self.settings().queue
            wait = bounded_retry_after(
                exc.retry_after,
                attempt,
                queue.backoff_initial.total_seconds(),
                queue.backoff_max.total_seconds(),
            )
            left = seconds_left(job, self.clock.now())
            # Without a wait of its own, the queue's backoff may still bring the job back
            # past its deadline: that run expires it.
            if left is not None and wait is not None and wait > left:
                return [self._event(job, number, "expired", f"{too_late_to_retry(job)} ({exc})")]
            raise TemporaryFailure(f"{number}: {exc}", retry_after=wait)
        if not made:
            # The job ends here: an earlier attempt's mark goes too (its record stays, for a
            # report that may still come).
            await self.records.not_in_flight(job.id, number, None)
        if exc.opted_out:
            await self.optouts.opt_out(number, f"the provider refuses it: {exc}", account.id)
        return [self._event(job, number, "failed", str(exc))]

    def _event(
        self,
        job: SmsJob | SentText,
        number: str,
        status: Status,
        reason: str | None,
        provider_id: str | None = None,
        at: str | None = None,
    ) -> Event:
        if isinstance(job, SentText):
            job_id, kind, account, appointment = job.job, job.kind, job.account, job.appointment
        else:
            job_id, kind = job.id, job.template or job.kind
            account, appointment = job.account, job.appointment_id
        return Event(
            job=job_id,
            kind=kind,
            status=status,
            at=at or rfc3339(self.clock.now()),
            account=account,
            appointment=appointment,
            channel="sms",
            recipient=number,
            reason=reason,
            message_id=provider_id,
        )


def _whole_seconds(left: float | None) -> int | None:
    return None if left is None else max(0, int(left))


def _describe(message: TextMessage, composed: ComposedText) -> str:
    parts = "1 part" if message.parts == 1 else f"{message.parts} parts"
    encoding = "GSM-7" if message.encoding == "gsm7" else "UCS-2"
    summary = f"{parts}, {encoding}"
    return f"{summary}; {composed.note}" if composed.note else summary
