"""What becomes of each message the SMTP server accepted: replies are forwarded to the
business, delivery reports and complaints suppress addresses, unsubscribes opt out."""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import replace
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from typing import Any

import dns.resolver
from redis.asyncio import Redis

from gateway.addresses import (
    BounceAddress,
    Postmaster,
    ReplyAddress,
    SenderMailbox,
    UnsubscribeAddress,
    bounce_address,
    message_tokens,
)
from gateway.bounce_matching import Rule
from gateway.clock import Clock, rfc3339
from gateway.directory import AccountDirectory
from gateway.events import Event, Status
from gateway.keys import Keys
from gateway.message_records import MessageRecord, read_record, record_message
from gateway.message_tokens import new_token
from gateway.outage import PROCESS, Outage, is_outage
from gateway.queue import JobQueue
from gateway.reply_tokens import MessageReference, ReplyTarget, TokenRefused, resolve
from gateway.settings import Settings
from inbound.authentication import authenticate
from inbound.forwarding import Forwarder, ForwardError
from inbound.loops import loop_reason, never_forward_to
from inbound.policy import RecipientCheck
from inbound.queue import InboundQueue
from inbound.received import ReceivedMessage
from inbound.reports import parse_arf, parse_dsn, parse_plain_bounce
from inbound.unsubscribe import Unsubscriber, message_event
from outbound.bounces import judge_report, settle
from outbound.headers import AddressRefused
from outbound.relay import OutgoingMessage, RelayTransport
from outbound.suppression import Suppression, SuppressionList

log = logging.getLogger(__name__)

# A forward the relay could not hand over yet stays unacknowledged and is tried again
# after this long, up to MAX_DELIVERIES times (then it is given up, with an event).
RETRY_IDLE_MS = 300_000
MAX_DELIVERIES = 12


class Retry(Exception):
    """The message could not be routed now (the relay deferred it): try again later."""


class InboundRouter:
    """Routes the messages of the inbound stream, one at a time per message."""

    def __init__(
        self,
        queue: InboundQueue,
        events: JobQueue,
        directory: AccountDirectory,
        check: RecipientCheck,
        settings: Callable[[], Settings],
        forwarder: Callable[[], Forwarder],
        transport: RelayTransport,
        resolver: dns.resolver.Resolver,
        clock: Clock,
        bounce_rules: Callable[[], Sequence[Rule]],
        outage: Outage | None = None,
    ) -> None:
        self.bounce_rules = bounce_rules
        self.queue = queue
        self.redis: Redis = queue.redis
        self.keys: Keys = queue.keys
        self.events = events
        self.directory = directory
        self.check = check
        self.settings = settings
        self.forwarder = forwarder
        self.transport = transport
        self.resolver = resolver
        self.clock = clock
        self.suppressions = SuppressionList(self.redis, self.keys, clock)
        self.unsubscriber = Unsubscriber(self.redis, self.keys, events, clock)
        self.outage = outage or PROCESS
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self, consumer: str, block_ms: int = 1000) -> None:
        """Route until stopped: first what others left pending, then new messages. Redis
        out of reach is waited out; a message that fails stays pending for another try."""
        failures = 0
        group_made = False
        while not self._stopping.is_set():
            try:
                if not group_made:
                    await self.queue.ensure_group()
                    group_made = True
                batch = await self.queue.reclaim(consumer, RETRY_IDLE_MS, 10)
                batch += await self.queue.read(consumer, 10, block_ms)
            except Exception as exc:
                failures += 1
                if self.outage.step_failed("inbound router", "read received mail", exc):
                    group_made = False
                await self.outage.wait(failures, self._stopping)
                continue
            failures = 0
            self.outage.ended()
            for entry, message, deliveries in batch:
                try:
                    await self.process(entry, message, deliveries)
                except Exception as exc:
                    if not is_outage(exc):
                        log.exception("inbound entry %s failed; left for another try", entry)

    async def process(self, entry: str, message: ReceivedMessage | None, deliveries: int) -> None:
        """Route one message and acknowledge it, unless it is to be tried again."""
        if message is None:
            # Only the SMTP server writes this stream: whoever else did is told, once.
            log.error("inbound entry %s is not a stored message; dropped", entry)
            await self.queue.done(entry)
            return
        try:
            events = await self.route(message)
        except Exception as exc:
            if is_outage(exc):
                raise
            if not isinstance(exc, Retry):
                log.exception("inbound %s: routing failed", message.id)
            if deliveries < MAX_DELIVERIES:
                log.info("inbound %s: will try again: %s", message.id, exc)
                return
            events = [
                self._event(message, "failed", f"given up after {deliveries} attempts: {exc}")
            ]
        await self.events.publish(events)
        await self.queue.done(entry)

    async def route(self, message: ReceivedMessage) -> list[Event]:
        events: list[Event] = []
        destinations: set[str] = set()
        for address in message.rcpt_to:
            recipient = self.check.classify(address)
            if isinstance(recipient, BounceAddress):
                events += await self._report(message, recipient.token)
            elif isinstance(recipient, UnsubscribeAddress):
                events += await self._unsubscribe_by_mail(message, recipient.token)
            elif isinstance(recipient, ReplyAddress | SenderMailbox):
                target = await self._target(message, recipient)
                if target is None:
                    events.append(
                        self._event(message, "skipped", f"{address}: answers no message we keep")
                    )
                    continue
                events += await self._reply(message, target, destinations)
            elif isinstance(recipient, Postmaster):
                # For whoever runs the gateway, not a business: reports are still read.
                events += await self._report(message, None)
        return events

    # Replies

    async def _target(
        self, message: ReceivedMessage, recipient: ReplyAddress | SenderMailbox
    ) -> ReplyTarget | None:
        if isinstance(recipient, ReplyAddress):
            if isinstance(recipient.target, ReplyTarget):
                return recipient.target
            with contextlib.suppress(TokenRefused):
                return await resolve(self.redis, self.keys, recipient.target)
            return None
        # Sent to the plain sender address: the Message-IDs it answers say what it is about.
        headers = _headers(message.data)
        references = f"{headers.get('In-Reply-To', '')} {headers.get('References', '')}"
        domains = [d.domain for d in self.settings().sender_domains]
        for token in reversed(message_tokens(references, domains)):
            with contextlib.suppress(TokenRefused):
                return await resolve(self.redis, self.keys, MessageReference(token, 0))
        return None

    async def _reply(
        self, message: ReceivedMessage, target: ReplyTarget, destinations: set[str]
    ) -> list[Event]:
        account = await self.directory.get(target.account)
        if account is None:
            return [self._event(message, "failed", f"unknown account '{target.account}'")]
        settings = self.settings()
        destination = account.reply_address_for(target.calendar)
        if destination in destinations:
            return []
        destinations.add(destination)
        domain = account.sender_domain or settings.default_sender_domain.domain
        headers = _headers(message.data)
        looped = loop_reason(headers, [d.domain for d in settings.sender_domains])
        if looped is not None:
            return [self._event(message, "skipped", f"not forwarded: {looped}", target)]
        if never_forward_to(destination, message.mail_from, headers.get("From")):
            reason = f"not forwarded: it comes from {destination}, where it would go"
            return [self._event(message, "skipped", reason, target)]
        name, client = _sender(headers, message.mail_from)
        results = await authenticate(
            message.data,
            mail_from=message.mail_from,
            helo=message.helo,
            peer=message.peer,
            srv_id=settings.inbound.hostname or socket.getfqdn(),
            resolver=self.resolver,
        )
        try:
            forwarded = self.forwarder().forward(
                message.data,
                client_name=name,
                client_address=client,
                business_name=account.business_name,
                sender_domain=domain,
                to=destination,
                auth_results=results.header_value(),
            )
        except (ForwardError, AddressRefused, ValueError) as exc:
            return [self._event(message, "failed", f"not forwarded: {exc}", target)]
        # Its own bounce address, so that a bounce of the forward is known and not
        # forwarded again to the business.
        token = new_token()
        bounce = bounce_address(token, domain)
        async with self.redis.pipeline(transaction=False) as pipe:
            record_message(
                pipe,
                self.keys,
                token,
                MessageRecord(
                    job=f"inbound/{message.id}",
                    account=account.id,
                    kind="reply",
                    recipient=destination,
                    sender_domain=domain,
                    appointment=target.appointment or "",
                    calendar=target.calendar or "",
                ),
                int(settings.inbound.message_id_ttl.total_seconds()),
            )
            await pipe.execute()
        [result] = await self.transport.deliver(OutgoingMessage(bounce, (destination,), forwarded))
        if result.status == "deferred":
            raise Retry(f"{destination}: {result.code} {result.response}")
        status: Status = "forwarded" if result.status == "sent" else "failed"
        reply = f"{result.code} {result.response}".strip()
        return [
            self._event(
                message,
                status,
                reply,
                target,
                recipient=destination,
                message_id=headers.get("Message-ID"),
            )
        ]

    # Delivery reports, complaints and unsubscribes

    async def _report(self, message: ReceivedMessage, token: str | None) -> list[Event]:
        """A delivery report's failures are bounces, which suppress the address when their
        class is about the address (outbound/bounces.py), and its delays deferrals; a
        feedback report (a complaint) stops the reminders and follow-ups to that address."""
        report = parse_dsn(message.data)
        feedback = parse_arf(message.data) if report is None else None
        if report is None and feedback is None:
            report = parse_plain_bounce(message.data)
        original = report.original_message_id if report else None
        if feedback is not None:
            original = feedback.original_message_id
        if token is None and original:
            domains = [d.domain for d in self.settings().sender_domains]
            tokens = message_tokens(original, domains)
            token = tokens[0] if tokens else None
        sent = await read_record(self.redis, self.keys, token)
        if sent is None:
            what = "a delivery report" if report else "a feedback report" if feedback else "mail"
            return [self._event(message, "skipped", f"{what} about no message we keep")]
        if report is None and feedback is None:
            return [self._event(message, "skipped", "neither a delivery nor a feedback report")]
        now = self.clock.now()
        at = rfc3339(now)
        events: list[Event] = []
        if feedback is not None:
            detail = f"feedback report ({feedback.feedback_type})"
            await self.suppressions.add(
                Suppression(sent["recipient"], "complaint", detail, at, sent["account"])
            )
            events.append(message_event(sent, token, "opted_out", detail, at))
        durations = self.settings().suppression
        for status in report.recipients if report else ():
            if status.action not in ("failed", "delayed"):
                continue
            failed = status.action == "failed"
            detail = status.diagnostic or f"{status.action} {status.status or ''}".strip()
            address = status.recipient or sent["recipient"]
            verdict = judge_report(status.status, status.diagnostic, failed, self.bounce_rules())
            await settle(
                self.suppressions, durations, verdict, address, detail, sent["account"], now
            )
            if failed:
                event = message_event(sent, token, "bounced", detail, at, address)
            else:
                event = message_event(
                    sent, token, "deferred", f"soft bounce: {detail}", at, address
                )
            events.append(replace(event, bounce_class=verdict.bounce_class))
        return events

    async def _unsubscribe_by_mail(self, message: ReceivedMessage, token: str) -> list[Event]:
        event = await self.unsubscriber(token, "mail to the unsubscribe address")
        if event is None:
            return [self._event(message, "skipped", "unsubscribe for no message we keep")]
        return [event]

    def _event(
        self,
        message: ReceivedMessage,
        status: Status,
        reason: str,
        target: ReplyTarget | None = None,
        *,
        recipient: str | None = None,
        message_id: str | None = None,
    ) -> Event:
        """An event of a received message (job `inbound/<id>`, kind `reply`)."""
        return Event(
            job=f"inbound/{message.id}",
            kind="reply",
            status=status,
            at=rfc3339(self.clock.now()),
            account=target.account if target else None,
            appointment=target.appointment if target else None,
            channel="email",
            recipient=recipient,
            reason=reason,
            message_id=message_id,
        )


def _headers(data: bytes) -> EmailMessage:
    parsed: Any = BytesHeaderParser(policy=email.policy.default).parsebytes(data)
    message: EmailMessage = parsed
    return message


def _sender(headers: EmailMessage, mail_from: str) -> tuple[str, str]:
    """The client's name and address: the From header's, else the envelope sender."""
    try:
        addresses: tuple[Address, ...] = headers["From"].addresses if headers["From"] else ()
    except (AttributeError, ValueError, IndexError):
        addresses = ()
    if addresses and addresses[0].addr_spec:
        return addresses[0].display_name, addresses[0].addr_spec
    return "", mail_from
