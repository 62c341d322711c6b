"""How outgoing mail leaves: the relay contract, its pure SMTP rules and the transport factory."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

RecipientStatus = Literal["sent", "deferred", "bounced"]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message to relay: its bounce address, recipients (one domain) and bytes."""

    sender: str
    recipients: tuple[str, ...]
    message: bytes
    require_tls: bool = False


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """What became of one recipient: status, SMTP code (0: no reply), text and server."""

    recipient: str
    status: RecipientStatus
    code: int
    response: str
    server: str | None


class RelayTransport(Protocol):
    """Sends envelopes; outcomes are results, never exceptions."""

    async def deliver(self, envelope: OutgoingMessage) -> list[RecipientResult]: ...

    async def has(self, envelope: OutgoingMessage) -> bool | None:
        """Whether this envelope's message was taken already (an attempt interrupted
        after sending it), or None when the transport cannot tell (SMTP has no way to
        ask a server what it took)."""
        ...

    async def close(self) -> None: ...


def classify(code: int) -> RecipientStatus:
    """The status an SMTP reply code means; 0 (no reply: timeout, refused) is temporary."""
    if 200 <= code < 300:
        return "sent"
    # 530 "authentication required" (RFC 4954) blames our configuration, not the message:
    # bouncing it would bounce everything sent until the configuration is fixed
    if 500 <= code < 600 and code != 530:
        return "bounced"
    return "deferred"


# What an SMTP command line may carry: no spaces, controls, angle brackets or non-ASCII
# (SMTPUTF8 is not supported), so that an address can never inject a command.
_ADDRESS = re.compile(r"[!-;=?-~]+@[!-;=?-~]+")


def address_problem(address: str, *, sender: bool = False) -> str | None:
    """Why an address cannot be written in an SMTP command, or None; "" is the null sender."""
    if sender and address == "":
        return None
    if not address.isascii():
        return f"5.6.7 {address!r} is not ASCII and SMTPUTF8 is not supported"
    if not _ADDRESS.fullmatch(address):
        return f"5.1.3 {address!r} is not a valid address"
    return None


def split_invalid(
    envelope: OutgoingMessage,
) -> tuple[list[RecipientResult], OutgoingMessage | None]:
    """Bounces for the addresses that cannot be sent, and the envelope of the others (or None)."""
    problem = address_problem(envelope.sender, sender=True)
    if problem is not None:
        return [RecipientResult(r, "bounced", 0, problem, None) for r in envelope.recipients], None
    bounces: list[RecipientResult] = []
    valid: list[str] = []
    for recipient in envelope.recipients:
        problem = address_problem(recipient)
        if problem is None:
            valid.append(recipient)
        else:
            bounces.append(RecipientResult(recipient, "bounced", 0, problem, None))
    if not valid:
        return bounces, None
    if not bounces:
        return [], envelope
    return bounces, replace(envelope, recipients=tuple(valid))


def in_order(
    envelope: OutgoingMessage, results: Iterable[RecipientResult]
) -> list[RecipientResult]:
    """Results listed in the envelope's recipient order."""
    by_recipient = {r.recipient: r for r in results}
    return [by_recipient[r] for r in envelope.recipients]


def recipient_domain(recipients: Sequence[str]) -> str:
    """The one domain of the recipients; ValueError when there are none or several."""
    domains = {r.rpartition("@")[2].lower().rstrip(".") for r in recipients}
    if len(domains) != 1 or "" in domains:
        raise ValueError(f"an envelope needs recipients of exactly one domain, got {recipients}")
    return domains.pop()


def wire_data(message: bytes) -> bytes:
    """The message as sent after DATA: CRLF lines, ending in CRLF, leading dots doubled."""
    data = re.sub(rb"\r?\n", b"\r\n", message)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..")
