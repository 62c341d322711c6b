"""The `sms.send` jobs queued to one number (on the stream, scheduled, retrying), counted when
it opts out: the texts the opt-out will suppress when their turn comes."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from gateway.batching import Script, ScriptBatcher
from gateway.directory import AccountDirectory
from gateway.errors import MalformedJob
from gateway.jobs import SmsJob, parse_job
from gateway.keys import Keys
from gateway.lua import lua_source
from gateway.phone_numbers import NumberRefused, to_e164

# Entries or payloads read per script call: each call holds Redis this long at most.
STEP = 1000

# The jobs that may be texts among the next entries of the stream, and among the payloads
# of the jobs waiting in the scheduled and retry sets (see outbound/sms/lua/).
STREAM_TEXTS = Script(lua_source("stream_texts", "outbound.sms.lua"))
PAYLOAD_TEXTS = Script(lua_source("payload_texts", "outbound.sms.lua"))

# Where a job id stands (gateway/scripts.py): only those still to run are suppressed.
FINISHED = frozenset({"done", "dead", "cancelled"})


class QueuedTexts:
    """Counts the texts queued to a number, reading the queue a step at a time."""

    def __init__(self, redis: Redis, keys: Keys, directory: AccountDirectory) -> None:
        self.redis = redis
        self.keys = keys
        self.directory = directory
        self._batcher = ScriptBatcher(redis)

    async def count(self, number: str) -> int:
        """How many `sms.send` jobs still to run text `number` (E.164), each job once."""
        ids = [job.id for job in await self._texts() if await self._to(job) == number]
        if not ids:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in dict.fromkeys(ids):
                pipe.get(self.keys.job_state(job_id))
            states = await pipe.execute()
        return sum(1 for state in states if state not in FINISHED)

    async def _texts(self) -> list[SmsJob]:
        raw: list[str] = []
        start = "-"
        while start:
            found = await self._batcher.run(
                STREAM_TEXTS, keys=[self.keys.jobs], args=[start, str(STEP)]
            )
            raw += found[1:]
            start = f"({found[0]}" if found[0] else ""
        cursor = "0"
        while True:
            found = await self._batcher.run(
                PAYLOAD_TEXTS, keys=[self.keys.payloads], args=[cursor, str(STEP)]
            )
            raw += found[1:]
            cursor = found[0]
            if cursor == "0":
                break
        return [job for text in raw if (job := _text_job(text)) is not None]

    async def _to(self, job: SmsJob) -> str | None:
        account = await self.directory.get(job.account)
        if account is None:
            return None
        try:
            return to_e164(job.to, account.country)
        except NumberRefused:
            return None


def _text_job(raw: Any) -> SmsJob | None:
    try:
        job = parse_job(raw)
    except MalformedJob:
        return None
    return job if isinstance(job, SmsJob) else None
