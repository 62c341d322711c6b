"""Identity of each sent message: one random token names its Message-ID, bounce
address and unsubscribe links, and a Redis record says what the message was."""

from __future__ import annotations

import base64
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio.client import Pipeline

from gateway.keys import Keys


def new_token() -> str:
    """26 lower-case base32 characters (130 random bits): unguessable, fits any local
    part, and survives servers that lower-case addresses."""
    return base64.b32encode(secrets.token_bytes(17)).decode().rstrip("=").lower()[:26]


@dataclass(frozen=True, slots=True)
class MessageIdentity:
    """The addresses derived from one message token."""

    token: str
    sender_domain: str
    reply_domain: str
    public_url: str

    @property
    def message_id(self) -> str:
        return f"<{self.token}@{self.sender_domain}>"

    @property
    def bounce_address(self) -> str:
        """The envelope sender: unique per message, so that a bounce names its message."""
        return f"b-{self.token}@{self.sender_domain}"

    @property
    def unsubscribe_url(self) -> str:
        return f"{self.public_url.rstrip('/')}/unsubscribe/{self.token}"

    @property
    def unsubscribe_mailto(self) -> str:
        return f"mailto:unsubscribe-{self.token}@{self.reply_domain}"


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
