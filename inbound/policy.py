"""Which envelope recipients the SMTP server takes: decided at RCPT, never an open relay."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from redis.asyncio import Redis

from gateway.addresses import (
    BounceAddress,
    NotOurDomain,
    Recipient,
    ReplyAddress,
    UnknownMailbox,
    UnsubscribeAddress,
    classify,
)
from gateway.clock import Clock
from gateway.directory import AccountDirectory
from gateway.keys import Keys
from gateway.message_records import is_recorded
from gateway.reply_tokens import MessageReference, TokenRefused, resolve
from gateway.settings import Settings
from inbound import smtp_replies as replies


class RecipientCheck:
    """The SMTP server's recipient policy: our addresses that lead somewhere, and nothing
    else. A reply address must name an account we know; a bounce or unsubscribe address,
    a message whose record we still keep."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        directory: AccountDirectory,
        settings: Callable[[], Settings],
        secrets: Callable[[], Sequence[bytes]],
        clock: Clock,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.directory = directory
        self.settings = settings
        self.secrets = secrets
        self.clock = clock

    def classify(self, address: str) -> Recipient:
        settings = self.settings()
        return classify(
            address,
            reply_domain=settings.inbound.reply_domain,
            sender_domains=[d.domain for d in settings.sender_domains],
            secrets=self.secrets(),
            now=self.clock.now(),
        )

    async def __call__(self, address: str) -> str | None:
        recipient = self.classify(address)
        if isinstance(recipient, NotOurDomain):
            return replies.REJECT_RELAY
        if isinstance(recipient, UnknownMailbox):
            return replies.REJECT_UNKNOWN_RCPT
        if isinstance(recipient, ReplyAddress):
            target = recipient.target
            if isinstance(target, MessageReference):
                try:
                    target = await resolve(self.redis, self.keys, target)
                except TokenRefused:
                    return replies.REJECT_UNKNOWN_RCPT
            if await self.directory.get(target.account) is None:
                return replies.REJECT_UNKNOWN_RCPT
        if isinstance(recipient, BounceAddress | UnsubscribeAddress) and not await is_recorded(
            self.redis, self.keys, recipient.token
        ):
            return replies.REJECT_UNKNOWN_RCPT
        return None
