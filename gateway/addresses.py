"""Our addresses, written and read here only: the sender mailbox, a message's Message-ID,
bounce and unsubscribe addresses, reply addresses, and what an envelope recipient is to us."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final

from gateway.message_tokens import MESSAGE_TOKEN
from gateway.reply_tokens import (
    PREFIX,
    MessageReference,
    ReplyTarget,
    TokenRefused,
    read_local_part,
)

SENDER_MAILBOX: Final = "scheduling"
POSTMASTER: Final = "postmaster"
BOUNCE_PREFIX: Final = "b-"
UNSUBSCRIBE_PREFIX: Final = "unsubscribe-"
UNSUBSCRIBE_PATH: Final = "/unsubscribe/"
# A msg-id in In-Reply-To or References (RFC 5322 3.6.4), split at its last "@".
_MSG_ID: Final = re.compile(r"<([^<>\s]+)@([^<>@\s]+)>")


def sender_address(domain: str) -> str:
    """The From address of every notification, and of forwarded replies."""
    return f"{SENDER_MAILBOX}@{domain}"


def bounce_address(token: str, domain: str) -> str:
    """The envelope sender of message `token`: unique per message, so that a bounce names
    its message."""
    return f"{BOUNCE_PREFIX}{token}@{domain}"


@dataclass(frozen=True, slots=True)
class MessageIdentity:
    """The addresses derived from one message token."""

    token: str
    sender_domain: str
    reply_domain: str
    public_url: str

    @property
    def sender_address(self) -> str:
        return sender_address(self.sender_domain)

    @property
    def message_id(self) -> str:
        return f"<{self.token}@{self.sender_domain}>"

    @property
    def bounce_address(self) -> str:
        return bounce_address(self.token, self.sender_domain)

    @property
    def unsubscribe_url(self) -> str:
        return f"{self.public_url.rstrip('/')}{UNSUBSCRIBE_PATH}{self.token}"

    @property
    def unsubscribe_mailto(self) -> str:
        return f"mailto:{UNSUBSCRIBE_PREFIX}{self.token}@{self.reply_domain}"

    def reply_address(self, local_part: str) -> str:
        """The reply address whose local part is a reply token (reply_tokens)."""
        return f"{local_part}@{self.reply_domain}"


@dataclass(frozen=True, slots=True)
class ReplyAddress:
    """A reply token on the reply domain: a client's answer to a notification."""

    target: ReplyTarget | MessageReference


@dataclass(frozen=True, slots=True)
class BounceAddress:
    """A message's envelope sender, b-<token>@<sender domain>: its DSNs and reports."""

    token: str
    domain: str


@dataclass(frozen=True, slots=True)
class UnsubscribeAddress:
    """unsubscribe-<token>@<reply domain>, from a message's List-Unsubscribe."""

    token: str


@dataclass(frozen=True, slots=True)
class SenderMailbox:
    """scheduling@<sender domain>: a reply to the From address, routed by its
    In-Reply-To and References."""

    domain: str


@dataclass(frozen=True, slots=True)
class Postmaster:
    """postmaster@ any of our domains, or the bare <Postmaster> (RFC 5321 4.5.1 says
    both must be accepted); `domain` is "" for the bare form. Mail for the gateway's
    operator, not for a business."""

    domain: str


@dataclass(frozen=True, slots=True)
class UnknownMailbox:
    """Our domain but no such mailbox, or a forged or expired token (550 5.1.1)."""

    reason: str


@dataclass(frozen=True, slots=True)
class NotOurDomain:
    """Another domain: relaying is refused (550 5.7.1)."""

    domain: str


Recipient = (
    ReplyAddress
    | BounceAddress
    | UnsubscribeAddress
    | SenderMailbox
    | Postmaster
    | UnknownMailbox
    | NotOurDomain
)


def classify(
    address: str,
    *,
    reply_domain: str,
    sender_domains: Collection[str],
    secrets: Sequence[bytes],
    now: float,
) -> Recipient:
    """What an envelope recipient (without its angle brackets) is to us. Domains and our
    local parts are compared in any case."""
    local, at, domain = address.rpartition("@")
    if not at:
        if address.lower() == POSTMASTER:
            return Postmaster("")
        return UnknownMailbox(f"not an address (no domain): {address!r}")
    domain = domain.lower().rstrip(".")
    ours_for_replies = domain == reply_domain.lower().rstrip(".")
    ours_for_sending = domain in _names(sender_domains)
    if not (ours_for_replies or ours_for_sending):
        return NotOurDomain(domain)
    mailbox = local.lower()
    if mailbox == POSTMASTER:
        return Postmaster(domain)
    # one domain may be both the reply domain and a sender domain (as "localhost" is by
    # default); the local parts of the two kinds never look alike
    if ours_for_replies and mailbox.startswith(PREFIX):
        try:
            return ReplyAddress(read_local_part(local, secrets, now))
        except TokenRefused as exc:
            return UnknownMailbox(str(exc))
    if ours_for_replies and mailbox.startswith(UNSUBSCRIBE_PREFIX):
        token = mailbox.removeprefix(UNSUBSCRIBE_PREFIX)
        if MESSAGE_TOKEN.fullmatch(token):
            return UnsubscribeAddress(token)
    if ours_for_sending and mailbox.startswith(BOUNCE_PREFIX):
        token = mailbox.removeprefix(BOUNCE_PREFIX)
        if MESSAGE_TOKEN.fullmatch(token):
            return BounceAddress(token, domain)
    if ours_for_sending and mailbox == SENDER_MAILBOX:
        return SenderMailbox(domain)
    return UnknownMailbox(f"no such mailbox: {address!r}")


def message_tokens(header_value: str, sender_domains: Collection[str]) -> list[str]:
    """The tokens of our Message-IDs in an In-Reply-To or References value, each once,
    in their order there (References ends with the most recent)."""
    ours = _names(sender_domains)
    found = (
        local.lower()
        for local, domain in _MSG_ID.findall(header_value)
        if domain.lower().rstrip(".") in ours
    )
    return list(dict.fromkeys(t for t in found if MESSAGE_TOKEN.fullmatch(t)))


def _names(domains: Collection[str]) -> set[str]:
    return {d.lower().rstrip(".") for d in domains}
