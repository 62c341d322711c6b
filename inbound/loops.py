"""Mail that must not go round: mail that looped back to us, and automatic mail never answered."""

from __future__ import annotations

import re
from collections.abc import Iterable
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import Final

# The forwarding adds it, naming the sender domain, to every message it forwards.
LOOP_HEADER: Final = "X-Mailgw-Loop"
# Postfix bounces at 50 hops; a reply from a client's mail client has a handful.
MAX_RECEIVED: Final = 25
# RFC 2369 and RFC 2919: mailing lists and bulk senders.
LIST_HEADERS: Final = ("List-Id", "List-Post", "List-Unsubscribe")
# Not standard, but set by vacation programs that write no Auto-Submitted.
AUTOREPLY_HEADERS: Final = ("X-Autoreply", "X-Autorespond")
BULK_PRECEDENCE: Final = frozenset({"bulk", "junk", "list"})
_WORD_END: Final = re.compile(r"[\s;(]")


def loop_reason(
    message: bytes | Message, our_domains: Iterable[str], max_received: int = MAX_RECEIVED
) -> str | None:
    """Why `message` has looped (it carries our trace header for one of `our_domains`, or
    has passed through more than `max_received` servers), or None when it has not."""
    headers = _headers(message)
    ours = {_domain(d) for d in our_domains}
    for value in headers.get_all(LOOP_HEADER, []):
        if _domain(str(value)) in ours:
            return f"already forwarded by this gateway ({LOOP_HEADER}: {value})"
    received = len(headers.get_all("Received", []))
    if received > max_received:
        return f"{received} Received headers, more than {max_received}"
    return None


def is_auto_reply(message: bytes | Message, mail_from: str | None = None) -> bool:
    """Whether `message` was sent by a program (RFC 3834): a vacation notice, a mailing
    list, a bounce. `mail_from` is the envelope sender when known, "" for the null sender."""
    if mail_from == "":
        return True
    headers = _headers(message)
    submitted = _first_word(headers.get("Auto-Submitted"))
    if submitted not in ("", "no"):
        return True
    if _first_word(headers.get("Precedence")) in BULK_PRECEDENCE:
        return True
    return any(name in headers for name in (*AUTOREPLY_HEADERS, *LIST_HEADERS))


def never_forward_to(destination: str, mail_from: str, from_header: str | None) -> bool:
    """Whether forwarding to `destination` would send the message back to its own sender:
    the envelope sender `mail_from` or an address of its From header."""
    senders = [mail_from]
    if from_header:
        senders += [address for _, address in getaddresses([from_header])]
    target = _address(destination)
    return any(_address(sender) == target for sender in senders if sender)


def _headers(message: bytes | Message) -> Message:
    if isinstance(message, Message):
        return message
    # Headers only: the body of a large message is not needed.
    return BytesHeaderParser(policy=policy.default).parsebytes(message)


def _first_word(value: object) -> str:
    """ "auto-replied" from "Auto-Replied; owner-email=x@example.org (vacation)"."""
    return _WORD_END.split(str(value or "").strip(), maxsplit=1)[0].lower()


def _domain(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _address(address: str) -> str:
    # Mail systems treat local parts without regard to case, whatever RFC 5321 allows.
    return address.strip().strip("<>").rstrip(".").casefold()
