"""What Redis keeps of each text: in flight (its answer awaited or lost), sent (found again
from its provider id), and the delivery reports that came before their text was known."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from gateway.batching import Script, ScriptBatcher
from gateway.keys import Keys
from gateway.lua import lua_source

# A text the provider took, recorded under its id; a delivery report for a text, matched to
# its record or kept for it (see outbound/sms/lua/).
RECORD = Script(lua_source("record", "outbound.sms.lua"))
REPORT = Script(lua_source("report", "outbound.sms.lua"))


@dataclass(frozen=True, slots=True)
class TextState:
    """Where a job's text to one number stands before an attempt."""

    # The provider's id, if an earlier attempt recorded it as sent.
    sent: str | None
    opted_out: bool
    # When a request whose outcome is unknown was first made (epoch s), if one was.
    in_flight_since: float | None
    # A delivery report has come naming the text by its reference (the provider's id).
    reported: bool


@dataclass(frozen=True, slots=True)
class SentText:
    """The record of a text sent, as a delivery report finds it."""

    job: str
    account: str
    appointment: str | None
    number: str
    kind: str


@dataclass(frozen=True, slots=True)
class EarlyReport:
    """A final delivery report that came before its text was known by the provider's id."""

    delivered: bool
    detail: str
    at: str


class SmsRecords:
    """The records of texts, kept `ttl()` seconds (inbound.message_id_ttl)."""

    def __init__(self, redis: Redis, keys: Keys, ttl: Callable[[], int]) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = ttl
        self._batcher = ScriptBatcher(redis)

    async def state(self, job: str, number: str, reference: str) -> TextState:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.delivered(job), number)
            pipe.hexists(self.keys.sms_opted_out, number)
            pipe.hget(self.keys.sms_in_flight(job), number)
            pipe.hexists(self.keys.sms_message(reference), "reported")
            sent, opted_out, since, reported = await pipe.execute()
        return TextState(
            sent or None, bool(opted_out), None if since is None else float(since), bool(reported)
        )

    async def in_flight(self, text: SentText, reference: str, now: float) -> bool:
        """Mark the text in flight before its request (keeping the time of the first such
        request), recorded under its reference for the providers whose reports name it so;
        True if this attempt made the mark."""
        ttl = self.ttl()
        flight = self.keys.sms_in_flight(text.job)
        record: Any = _fields(text)  # redis-py wants a Mapping of its own key union
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hsetnx(flight, text.number, repr(now))
            pipe.expire(flight, ttl)
            pipe.hset(self.keys.sms_message(reference), mapping=record)
            pipe.expire(self.keys.sms_message(reference), ttl)
            made, *_ = await pipe.execute()
        return bool(made)

    async def not_in_flight(self, job: str, number: str, reference: str | None) -> None:
        """The text's request was refused (the provider said so) or given up: nothing is in
        flight. With `reference`, its in-flight record goes too; without, it stays for a
        report of the provider's that may still come."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hdel(self.keys.sms_in_flight(job), number)
            if reference is not None:
                pipe.delete(self.keys.sms_message(reference))
            await pipe.execute()

    async def sent(self, text: SentText, provider_id: str, reference: str) -> EarlyReport | None:
        """Record the text as sent under `provider_id`; the final report that came for it
        before, if one did."""
        keys = self.keys
        report = await self._batcher.run(
            RECORD,
            keys=[
                keys.delivered(text.job),
                keys.sms_message(provider_id),
                keys.sms_last_account(text.number),
                keys.sms_in_flight(text.job),
                keys.sms_report(provider_id),
                keys.sms_message(reference),
            ],
            args=[
                text.number,
                provider_id,
                str(self.ttl()),
                text.job,
                text.account,
                text.appointment or "",
                text.kind,
            ],
        )
        if not report:
            return None
        early = json.loads(report)
        return EarlyReport(bool(early["delivered"]), str(early["detail"]), str(early["at"]))

    async def report(self, provider_id: str, early: EarlyReport | None) -> SentText | None:
        """A delivery report for `provider_id`: the text it is about, if known; else
        `early` (a final report) is kept for the text that will be found under that id."""
        kept = (
            ""
            if early is None
            else json.dumps({"delivered": early.delivered, "detail": early.detail, "at": early.at})
        )
        found = await self._batcher.run(
            REPORT,
            keys=[self.keys.sms_message(provider_id), self.keys.sms_report(provider_id)],
            args=[kept, str(self.ttl())],
        )
        if not found:
            return None
        fields = dict(zip(found[::2], found[1::2], strict=True))
        return SentText(
            job=fields["job"],
            account=fields["account"],
            appointment=fields["appointment"] or None,
            number=fields["number"],
            kind=fields["kind"],
        )

    async def owners(self, provider_ids: list[str]) -> list[tuple[str, str] | None]:
        """For each id, the (job, number) of the text recorded under it, if one is."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for provider_id in provider_ids:
                pipe.hmget(self.keys.sms_message(provider_id), ["job", "number"])
            found = await pipe.execute()
        return [(job, number) if job and number else None for job, number in found]


def _fields(text: SentText) -> dict[str, str]:
    return {
        "job": text.job,
        "account": text.account,
        "appointment": text.appointment or "",
        "number": text.number,
        "kind": text.kind,
    }
