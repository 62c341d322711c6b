"""Unsubscribing the recipient of a sent message, by one-click POST or by mail (RFC 8058)."""

from __future__ import annotations

from redis.asyncio import Redis

from gateway.clock import Clock, rfc3339
from gateway.events import Event, Status
from gateway.keys import Keys
from gateway.message_records import read_record
from gateway.queue import JobQueue
from outbound.suppression import Suppression, SuppressionList


def message_event(
    sent: dict[str, str],
    token: str | None,
    status: Status,
    reason: str,
    at: str,
    recipient: str | None = None,
) -> Event:
    """An event about the sent message `sent`: its job, kind, appointment and Message-ID."""
    return Event(
        job=sent["job"],
        kind=sent["kind"],
        status=status,
        at=at,
        account=sent["account"],
        appointment=sent.get("appointment") or None,
        channel="email",
        recipient=recipient or sent["recipient"],
        reason=reason,
        message_id=f"<{token}@{sent['sender_domain']}>",
    )


class Unsubscriber:
    """Stops the reminders and follow-ups of the account that sent a message to its
    recipient (PRODUCT.md), and publishes an `opted_out` event."""

    def __init__(self, redis: Redis, keys: Keys, events: JobQueue, clock: Clock) -> None:
        self.redis = redis
        self.keys = keys
        self.events = events
        self.clock = clock
        self.suppressions = SuppressionList(redis, keys)

    async def __call__(self, token: str, how: str) -> Event | None:
        """None when the message is not known (any more)."""
        sent = await read_record(self.redis, self.keys, token)
        if sent is None:
            return None
        at = rfc3339(self.clock.now())
        await self.suppressions.add(
            Suppression(sent["recipient"], "unsubscribe", how, at, sent["account"])
        )
        return message_event(sent, token, "opted_out", how, at)

    async def one_click(self, token: str) -> bool:
        """The web page's POST: recorded and published; False for an unknown token."""
        event = await self(token, "one-click unsubscribe")
        if event is not None:
            await self.events.publish([event])
        return event is not None
