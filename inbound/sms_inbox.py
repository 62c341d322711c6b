"""What the gateway does with a provider's callbacks: delivery reports, STOP, START, other texts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from gateway.clock import Clock, rfc3339
from gateway.directory import AccountDirectory
from gateway.events import Event
from gateway.keys import Keys
from gateway.queue import JobQueue
from gateway.settings import Settings
from gateway.sms_provider import (
    DeliveryReceipt,
    IncomingText,
    ProviderError,
    SmsProvider,
    TextMessage,
)
from inbound.sms_rules import automatic_answer, meaning
from outbound.sms.optouts import SmsOptOuts
from outbound.sms.queued import QueuedTexts
from outbound.sms.records import EarlyReport, SmsRecords
from outbound.sms.segments import check_length

log = logging.getLogger(__name__)

# The `kind` of events a client's own text caused (no job did).
INCOMING_KIND = "sms.incoming"


class SmsInbox:
    """Turns callbacks into events, opt-outs and, at most once per interval, an answer."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        queue: JobQueue,
        directory: AccountDirectory,
        settings: Callable[[], Settings],
        provider: Callable[[], SmsProvider],
        clock: Clock,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.queue = queue
        self.directory = directory
        self.settings = settings
        self.provider = provider
        self.clock = clock
        self.optouts = SmsOptOuts(
            redis, keys, clock, lambda: int(settings().queue.history_ttl.total_seconds())
        )
        self.records = SmsRecords(
            redis, keys, lambda: int(settings().inbound.message_id_ttl.total_seconds())
        )
        self.queued = QueuedTexts(redis, keys, directory)

    async def receipt(self, receipt: DeliveryReceipt) -> Event | None:
        """A final delivery report becomes a `delivered` or `failed` event of the text's job;
        one for a text not known by that id yet (its answer was lost) is kept for it, and
        becomes its event when the text is found."""
        at = rfc3339(self.clock.now())
        final = receipt.delivered is not None
        early = EarlyReport(bool(receipt.delivered), receipt.detail, at) if final else None
        sent = await self.records.report(receipt.provider_id, early)
        if sent is None:
            if final:
                log.info(
                    "delivery report for a text not known (yet) as %s, kept: %s",
                    receipt.provider_id,
                    receipt.detail,
                )
            return None
        if not final:
            return None
        event = Event(
            job=sent.job,
            kind=sent.kind,
            status="delivered" if receipt.delivered else "failed",
            at=at,
            account=sent.account,
            appointment=sent.appointment,
            channel="sms",
            recipient=sent.number,
            reason=receipt.detail,
            message_id=receipt.provider_id,
        )
        await self.queue.publish([event])
        return event

    async def incoming(self, text: IncomingText) -> Event | None:
        """STOP and its synonyms opt the number out, START and its opt it back in;
        anything else gets the automatic answer."""
        number = text.sender
        account: Any = await self.redis.get(self.keys.sms_last_account(number))
        what = meaning(text.text)
        if what == "other":
            await self._answer(number, account)
            return None
        if what == "opt_out":
            dropped = await self.optouts.opt_out(number, f"answered {text.text.strip()!r}", account)
            # Counted once the opt-out is in place: each of them meets it when its turn comes.
            queued = await self.queued.count(number)
            reason = (
                f"answered {text.text.strip()!r}; {dropped} waiting text(s) dropped,"
                f" {queued} queued text(s) to be suppressed"
            )
        else:
            await self.optouts.opt_in(number)
            reason = f"answered {text.text.strip()!r}"
        event = Event(
            job="",
            kind=INCOMING_KIND,
            status="opted_out" if what == "opt_out" else "opted_in",
            at=rfc3339(self.clock.now()),
            account=account,
            channel="sms",
            recipient=number,
            reason=reason,
        )
        await self.queue.publish([event])
        return event

    async def _answer(self, number: str, account_id: str | None) -> None:
        if await self.redis.hexists(self.keys.sms_opted_out, number):
            return
        # Once per interval: an auto-responder at the other end must not start a loop.
        interval = int(self.settings().sms.answer_interval.total_seconds())
        key, now = self.keys.sms_answered(number), self.clock.now()
        if not await self.redis.set(key, now, nx=True, ex=interval):
            last: Any = await self.redis.get(key)
            if last is not None and now - float(last) < interval:
                return
            await self.redis.set(key, now, ex=interval)
        account = await self.directory.get(account_id) if account_id else None
        answer = automatic_answer(
            account.locale if account else None, account.business_name if account else None
        )
        segments = check_length(answer)
        message = TextMessage(
            to=number,
            text=answer,
            reference=f"answer/{number}/{int(self.clock.now())}",
            encoding=segments.encoding,
            parts=segments.parts,
        )
        try:
            await self.provider().send(message)
        except ProviderError as exc:
            log.warning("could not answer %s: %s", number, exc)
