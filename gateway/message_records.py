"""The Redis record of each sent message (Keys.message), written and read here only."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from gateway.keys import Keys


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """What bounces, replies and unsubscribes need to know about a sent message."""

    job: str
    account: str
    kind: str
    recipient: str
    sender_domain: str
    appointment: str = ""
    calendar: str = ""

    def fields(self) -> dict[str, str]:
        return asdict(self)


def record_message(
    pipe: Pipeline, keys: Keys, token: str, record: MessageRecord, ttl_seconds: int
) -> None:
    """Queue the writes of a message's record on `pipe` (the caller executes it)."""
    fields: Any = record.fields()  # redis-py wants a Mapping of its own key union
    pipe.hset(keys.message(token), mapping=fields)
    pipe.expire(keys.message(token), ttl_seconds)


async def read_record(redis: Redis, keys: Keys, token: str | None) -> dict[str, str] | None:
    """The record of the message we sent under `token`, while it is kept."""
    if not token:
        return None
    record: Any = await redis.hgetall(keys.message(token))
    return dict(record) if record else None


async def is_recorded(redis: Redis, keys: Keys, token: str) -> bool:
    """Whether the message `token` names is still on record."""
    return bool(await redis.exists(keys.message(token)))
