"""`sms.send` jobs: check the number and the opt-outs, compose the text, hand it to the provider."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from redis.asyncio import Redis

from gateway import metrics
from gateway.account import Account
from gateway.clock import Clock, rfc3339
from gateway.directory import AccountDirectory
from gateway.errors import PermanentFailure, TemporaryFailure
from gateway.events import Event, Status
from gateway.jobs import Job, SmsJob
from gateway.keys import Keys
from gateway.outage import PROCESS
from gateway.settings import Settings
from outbound.owner_templates import OwnerTemplates
from outbound.sms.compose import ComposedText, TextRefused, compose_text
from outbound.sms.numbers import NumberRefused, to_e164
from outbound.sms.optouts import SmsOptOuts
from outbound.sms.provider import ProviderContext, ProviderError, SmsProvider, TextMessage
from outbound.sms.segments import TextTooLong, check_length


class SmsHandler:
    """One text per `sms.send` job, to one number, at most once."""

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
        self.redis = redis
        self.templates = templates
        self.keys = keys
        self.directory = directory
        self.settings = settings
        self.provider = provider
        self.context = context
        self.clock = clock
        self.optouts = SmsOptOuts(
            redis, keys, clock, lambda: int(settings().queue.history_ttl.total_seconds())
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
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.delivered(job.id), number)
            pipe.hget(self.keys.sms_opted_out, number)
            earlier, opted_out = await pipe.execute()
        if earlier:
            # The provider took it at an attempt whose worker died before recording it.
            return [
                self._event(job, number, "sent", "sent by an interrupted earlier attempt", earlier)
            ]
        if opted_out:
            return [self._event(job, number, "suppressed", "the number answered STOP")]
        try:
            composed = await compose_text(job, account, self.templates())
            segments = check_length(composed.text)
        except (TextRefused, TextTooLong) as exc:
            return [self._event(job, number, "failed", str(exc))]
        message = TextMessage(
            to=number,
            text=composed.text,
            reference=f"{job.id}/{number}",
            encoding=segments.encoding,
            parts=segments.parts,
            status_callback=self.context.callback_url("status"),
        )
        try:
            accepted = await self.provider().send(message)
        except ProviderError as exc:
            return await self._refused(job, account, number, exc)
        metrics.record_sms(self.context.name, message.encoding, message.parts)
        # The provider has it: Redis away is waited out, not a failure.
        record = partial(self._record, job, account, number, accepted.provider_id)
        await PROCESS.retried("SMS handler", record)
        return [
            self._event(job, number, "sent", _describe(message, composed), accepted.provider_id)
        ]

    async def _refused(
        self, job: SmsJob, account: Account, number: str, exc: ProviderError
    ) -> list[Event]:
        if exc.temporary:
            # Without the provider's own delay, the queue's backoff applies.
            raise TemporaryFailure(f"{number}: {exc}", retry_after=exc.retry_after)
        if exc.opted_out:
            await self.optouts.opt_out(number, f"the provider refuses it: {exc}", account.id)
        return [self._event(job, number, "failed", str(exc))]

    async def _record(self, job: SmsJob, account: Account, number: str, provider_id: str) -> None:
        """Kept for a retry (not sent twice), the delivery report (matched to the job)
        and the automatic answer (in the account's name)."""
        inbound = self.settings().inbound
        ttl = int(inbound.message_id_ttl.total_seconds())
        record: Any = {  # redis-py wants a Mapping of its own key union
            "job": job.id,
            "account": account.id,
            "appointment": job.appointment_id or "",
            "number": number,
            "kind": job.template or job.kind,
        }
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.delivered(job.id), number, provider_id)
            pipe.expire(self.keys.delivered(job.id), ttl)
            pipe.hset(self.keys.sms_message(provider_id), mapping=record)
            pipe.expire(self.keys.sms_message(provider_id), ttl)
            pipe.set(self.keys.sms_last_account(number), account.id, ex=ttl)
            await pipe.execute()

    def _event(
        self,
        job: SmsJob,
        number: str,
        status: Status,
        reason: str | None,
        provider_id: str | None = None,
    ) -> Event:
        return Event(
            job=job.id,
            kind=job.template or job.kind,
            status=status,
            at=rfc3339(self.clock.now()),
            account=job.account,
            appointment=job.appointment_id,
            channel="sms",
            recipient=number,
            reason=reason,
            message_id=provider_id,
        )


def _describe(message: TextMessage, composed: ComposedText) -> str:
    parts = "1 part" if message.parts == 1 else f"{message.parts} parts"
    encoding = "GSM-7" if message.encoding == "gsm7" else "UCS-2"
    summary = f"{parts}, {encoding}"
    return f"{summary}; {composed.note}" if composed.note else summary
