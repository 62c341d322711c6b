"""The dead letters (Keys.dead): jobs that will not run, read, replayed and purged."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from gateway import scripts
from gateway.batching import ScriptBatcher
from gateway.entries import MAX_NAMED_ID, json_object, text_field
from gateway.keys import Keys


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-letter entry."""

    entry_id: str
    job: str
    reason: str
    failed_at: str
    attempts: int
    job_id: str | None

    def summary(self) -> dict[str, Any]:
        job = json_object(self.job) or {}
        return {
            "dead_letter": self.entry_id,
            "job": self.job_id or text_field(job.get("id"), MAX_NAMED_ID),
            "kind": text_field(job.get("kind"), MAX_NAMED_ID),
            "failed_at": self.failed_at,
            "attempts": self.attempts,
            "reason": self.reason,
        }


NOT_REPLAYABLE = "no-job"


class DeadLetters:
    """The dead-letter stream, as `mailgw dead-letters` and the tests see it; the worker
    puts jobs there with the queue's scripts (JobQueue.dead_letter)."""

    def __init__(self, redis: Redis, keys: Keys, batcher: ScriptBatcher, state_ttl: int) -> None:
        self.redis = redis
        self.keys = keys
        self._batcher = batcher
        self._state_ttl = str(state_ttl)

    async def read(self, start: str = "-", count: int = 100) -> list[DeadLetter]:
        """Dead letters from the entry id `start` on, oldest first."""
        entries: Any = await self.redis.xrange(self.keys.dead, min=start, max="+", count=count)
        return [_dead_letter(entry_id, fields) for entry_id, fields in entries]

    async def entry(self, entry_id: str) -> DeadLetter | None:
        entries: Any = await self.redis.xrange(self.keys.dead, min=entry_id, max=entry_id)
        return _dead_letter(*entries[0]) if entries else None

    async def replay(self, entry_ids: Iterable[str]) -> dict[str, str | None]:
        """Put dead letters back on the stream; maps each to its new entry, None if
        there is no such dead letter, or NOT_REPLAYABLE for an entry that had no job."""
        replayed: dict[str, str | None] = {}
        for entry_id in entry_ids:
            letter = await self.entry(entry_id)
            job_id = letter.job_id if letter and letter.job_id else ""
            new_entry = await self._batcher.run(
                scripts.REPLAY,
                keys=[
                    self.keys.dead,
                    self.keys.jobs,
                    self.keys.job_state(job_id),
                    self.keys.attempts,
                ],
                args=[entry_id, job_id, self._state_ttl],
            )
            replayed[entry_id] = str(new_entry) if new_entry else None
        return replayed

    async def all_ids(self) -> list[str]:
        ids: list[str] = []
        start = "-"
        while True:
            batch: Any = await self.redis.xrange(self.keys.dead, min=start, max="+", count=1000)
            ids.extend(entry_id for entry_id, _ in batch)
            if len(batch) < 1000:
                return ids
            start = "(" + batch[-1][0]

    async def purge(self, entry_ids: Sequence[str] | None = None) -> int:
        """Delete the given dead letters, or all of them; returns how many went."""
        if entry_ids is None:
            count = int(await self.redis.xlen(self.keys.dead))
            await self.redis.delete(self.keys.dead)
            return count
        return int(await self.redis.xdel(self.keys.dead, *entry_ids)) if entry_ids else 0


def _dead_letter(entry_id: str, fields: dict[str, str]) -> DeadLetter:
    return DeadLetter(
        entry_id=entry_id,
        job=fields.get("job", fields.get("fields", "")),
        reason=fields.get("reason", ""),
        failed_at=fields.get("failed_at", ""),
        attempts=int(fields.get("attempts", 0)),
        job_id=fields.get("id"),
    )
