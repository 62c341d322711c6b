"""Delivery status notifications (RFC 3464), plain-text and vendor bounces (flufl.bounce's
detectors, behind the RFC 3464 parser) and feedback reports (RFC 5965), read from mail."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.message import Message
from email.parser import HeaderParser
from email.utils import parsedate_to_datetime
from typing import Final, Literal

from flufl.bounce import all_failures

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]

ACTIONS: Final[tuple[Action, ...]] = ("failed", "delayed", "delivered", "relayed", "expanded")
# RFC 3463 status codes; Exchange writes subject details of three digits (5.1.10).
_STATUS: Final = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
# What to make of a recipient whose Action field is missing or unknown.
_ACTION_OF_CLASS: Final[dict[str, Action]] = {"5": "failed", "4": "delayed", "2": "delivered"}
_DSN_PARTS: Final = frozenset({"message/delivery-status", "message/global-delivery-status"})
_ARF_PARTS: Final = frozenset({"message/feedback-report"})
_ORIGINAL_PARTS: Final = frozenset(
    {"message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers"}
)
_BLANK_LINE: Final = re.compile(r"\r?\n[ \t]*\r?\n")
_ANGLED: Final = re.compile(r"<([^<>]*)>")
# RFC 6533 utf-8-addr-xtext: \x{E9} stands for é in addresses of type utf-8.
_UTF8_ESCAPE: Final = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")
# A remote server's reply in a plain-text bounce: "550 5.1.1 ...", "Remote host said: 550 ...",
# Postfix's "host mx[192.0.2.1] said: 550 5.1.1", Yahoo's "554: delivery error: ...".
_REPLY_LINE: Final = re.compile(r"(?:^\s*|said:\s*)([45]\d\d)(?:[ -]|:\s)\s*(\S.*)$")
_MESSAGE_ID_LINE: Final = re.compile(r"^message-id:\s*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
# The part of a plain-text bounce read for its diagnostics: the explanation comes first.
_PLAIN_TEXT_READ: Final = 65536


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """What became of the message for one recipient."""

    recipient: str
    action: Action
    # "5.1.1"; None when the report gives no status code.
    status: str | None
    # The remote server's answer, "550 5.1.1 <x@example.org>: User unknown".
    diagnostic: str | None
    remote_mta: str | None


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A delivery status notification: one status per recipient it reports on."""

    reporting_mta: str | None
    recipients: tuple[RecipientStatus, ...]
    # The Message-ID of the message it is about, as written there ("<id@domain>").
    original_message_id: str | None
    original_envelope_id: str | None


@dataclass(frozen=True, slots=True)
class FeedbackReport:
    """A feedback report: a recipient's mailbox provider says what the recipient thought."""

    # abuse, fraud, virus, other, not-spam... in lower case.
    feedback_type: str
    user_agent: str | None
    version: str | None
    original_mail_from: str | None
    original_rcpt_to: tuple[str, ...]
    arrival_date: datetime | None
    source_ip: str | None
    original_message_id: str | None


def parse_dsn(message: bytes) -> DeliveryReport | None:
    """The delivery status notification in `message`, or None when it holds none that names
    a recipient: old MTAs' plain-text bounces, replies, anything malformed. Never raises.

    The report is its first message/delivery-status (or RFC 6533 global) part, in a
    multipart/report or, from MTAs that wrap it otherwise, anywhere in its multipart tree."""
    parsed = _parse(message)
    part = _first_part(parsed, _DSN_PARTS) if parsed is not None else None
    if parsed is None or part is None:
        return None
    blocks = _blocks(part)
    recipients = tuple(r for r in map(_recipient, blocks) if r is not None)
    if not recipients:
        return None
    per_message = blocks[0]
    return DeliveryReport(
        reporting_mta=_typed_value(_field(per_message, "Reporting-MTA")),
        recipients=recipients,
        original_message_id=_original_message_id(parsed),
        original_envelope_id=_field(per_message, "Original-Envelope-Id"),
    )


def parse_plain_bounce(message: bytes) -> DeliveryReport | None:
    """A bounce that is no RFC 3464 report (qmail, Exim, old Postfix, Yahoo's plain text...):
    the recipients flufl.bounce's detectors find, permanent ones failed and temporary ones
    delayed, each with the reply found next to its address. None when none is found. Never
    raises."""
    parsed = _parse(message)
    if parsed is None:
        return None
    try:
        temporary, permanent = all_failures(parsed)
    except Exception:
        # flufl.bounce's heuristics run on whatever reaches a bounce address: a detector
        # that trips on garbage means no bounce was found, as parse_dsn says of garbage.
        return None
    lines = _plain_text(parsed).splitlines()
    recipients = tuple(
        _plain_recipient(address.decode("utf-8", "replace"), failed, lines)
        for failed, addresses in ((True, permanent), (False, temporary))
        for address in sorted(addresses)
    )
    if not recipients:
        return None
    found = _MESSAGE_ID_LINE.search("\n".join(lines))
    return DeliveryReport(
        reporting_mta=None,
        recipients=recipients,
        original_message_id=_original_message_id(parsed) or (found[1] if found else None),
        original_envelope_id=None,
    )


def _plain_text(message: Message) -> str:
    """The text parts of a bounce, not those of the message it returns."""
    texts: list[str] = []
    for part in _parts(message):
        if part.get_content_maintype() != "text" or part.get_content_type() == "text/html":
            continue
        body = part.get_payload(decode=True)
        if isinstance(body, bytes):
            charset = part.get_content_charset() or "utf-8"
            try:
                texts.append(body[:_PLAIN_TEXT_READ].decode(charset, "replace"))
            except LookupError:
                texts.append(body[:_PLAIN_TEXT_READ].decode("utf-8", "replace"))
    return "\n".join(texts)


def _plain_recipient(address: str, failed: bool, lines: list[str]) -> RecipientStatus:
    diagnostic = _diagnostic(address, lines)
    code = _STATUS.search(diagnostic or "")
    status = ".".join(code.groups()) if code else ("5.0.0" if failed else "4.0.0")
    return RecipientStatus(
        recipient=address,
        action="failed" if failed else "delayed",
        status=status,
        diagnostic=diagnostic,
        remote_mta=None,
    )


def _diagnostic(address: str, lines: list[str]) -> str | None:
    """The reply after the first line naming `address` (else anywhere): a line with a reply
    code and its indented continuation, or else the paragraph right after the address."""
    named = next((i for i, line in enumerate(lines) if address.lower() in line.lower()), None)
    for start in ((named,) if named is not None else ()) + (0,):
        for index in range(start, len(lines)):
            reply = _REPLY_LINE.search(lines[index])
            if reply is None:
                continue
            folded = [f"{reply[1]} {reply[2]}"]
            for line in lines[index + 1 :]:
                if not line.strip() or not line[0].isspace():
                    break
                folded.append(line)
            return " ".join(" ".join(folded).split())
    if named is None:
        return None
    paragraph: list[str] = []
    for line in lines[named + 1 :]:
        if not line.strip():
            break
        paragraph.append(line)
    return " ".join(" ".join(paragraph).split()) or None


def parse_arf(message: bytes) -> FeedbackReport | None:
    """The feedback report in `message` (its first message/feedback-report part), or None
    when it holds none with a Feedback-Type. Never raises."""
    parsed = _parse(message)
    part = _first_part(parsed, _ARF_PARTS) if parsed is not None else None
    if parsed is None or part is None:
        return None
    fields = next((b for b in _blocks(part) if _field(b, "Feedback-Type")), None)
    if fields is None:
        return None
    return FeedbackReport(
        feedback_type=(_field(fields, "Feedback-Type") or "").lower(),
        user_agent=_field(fields, "User-Agent"),
        version=_field(fields, "Version"),
        original_mail_from=_address(_field(fields, "Original-Mail-From")),
        original_rcpt_to=tuple(
            a for a in map(_address, _fields(fields, "Original-Rcpt-To")) if a is not None
        ),
        arrival_date=_date(_field(fields, "Arrival-Date") or _field(fields, "Received-Date")),
        source_ip=_field(fields, "Source-IP"),
        original_message_id=_original_message_id(parsed),
    )


def _parse(message: bytes) -> Message | None:
    try:
        return message_from_bytes(message, policy=policy.default)
    except RecursionError:
        # The email package parses nested multiparts recursively: garbage can nest deeper
        # than Python's stack allows.
        return None


def _parts(message: Message) -> Iterator[Message]:
    """The message and its parts, not descending into attached messages (the original
    message a report carries may itself be a report)."""
    yield message
    if message.get_content_maintype() == "multipart":
        for part in _subparts(message):
            yield from _parts(part)


def _subparts(message: Message) -> list[Message]:
    """What the email package parsed the body into: the parts of a multipart, the message
    of a message/* part, the blocks of a message/delivery-status part."""
    payload = message.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _first_part(message: Message, types: frozenset[str]) -> Message | None:
    return next((p for p in _parts(message) if p.get_content_type() in types), None)


def _blocks(part: Message) -> list[Message]:
    """The blocks of fields of a report part, each as a message's headers. The email package
    has already split a message/delivery-status part into blocks, and read other message/*
    parts as a message whose headers are the first block and whose body holds the others."""
    found: list[Message] = []
    for block in _subparts(part):
        found.append(block)
        body = block.get_payload(decode=True)
        if isinstance(body, bytes):
            text = body.decode("utf-8", "replace")
            found.extend(HeaderParser(policy=policy.default).parsestr(b) for b in _split(text))
    return [b for b in found if len(b)]


def _split(text: str) -> list[str]:
    return [b for b in _BLANK_LINE.split(text) if b.strip()]


def _recipient(block: Message) -> RecipientStatus | None:
    recipient = _typed_value(_field(block, "Final-Recipient")) or _typed_value(
        _field(block, "Original-Recipient")
    )
    if not recipient:
        return None
    status_field = _field(block, "Status") or ""
    diagnostic = _typed_value(_field(block, "Diagnostic-Code"))
    # A missing or garbled Status: the server's answer may hold the code.
    code = _STATUS.search(status_field) or _STATUS.search(diagnostic or "")
    status = ".".join(code.groups()) if code else None
    action_field = (_field(block, "Action") or "").split(" ")[0].lower()
    action = next((a for a in ACTIONS if a == action_field), None)
    if action is None and status is not None:
        action = _ACTION_OF_CLASS[status[0]]
    if action is None:
        return None
    remote = _typed_value(_field(block, "Remote-MTA"))
    return RecipientStatus(
        recipient=_address(recipient) or recipient,
        action=action,
        status=status,
        diagnostic=diagnostic,
        # Gmail: "dns; mx.example.org. (192.0.2.25, the server for the domain ...)".
        remote_mta=remote.split(" ")[0].rstrip(".") if remote else None,
    )


def _fields(block: Message, name: str) -> list[str]:
    """The values of the field, unfolded, with runs of white space as one space."""
    try:
        found = [str(value) for value in block.get_all(name, [])]
    except Exception:
        # The email package's header parser itself fails on some damaged fields (an
        # IndexError in a Message-ID, for one): their text as it came, then.
        found = [value for key, value in block.raw_items() if key.lower() == name.lower()]
    values = (" ".join(value.split()) for value in found)
    return [v for v in values if v]


def _field(block: Message, name: str) -> str | None:
    values = _fields(block, name)
    return values[0] if values else None


def _typed_value(value: str | None) -> str | None:
    """The value of a typed field ("rfc822; x@example.org", "dns; mx.example.org")."""
    if value is None:
        return None
    kind, semicolon, rest = value.partition(";")
    if not semicolon:
        return value
    if kind.strip().lower() == "utf-8":
        rest = _UTF8_ESCAPE.sub(_unescape, rest)
    return rest.strip() or None


def _unescape(escape: re.Match[str]) -> str:
    code = int(escape[1], 16)
    # Surrogates and numbers beyond Unicode stand for no character: kept as written.
    return escape[0] if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF else chr(code)


def _address(value: str | None) -> str | None:
    """A bare address from "<x@example.org>" or "x@example.org"."""
    if value is None:
        return None
    angled = _ANGLED.search(value)
    return (angled[1] if angled else value).strip() or None


def _original_message_id(report: Message) -> str | None:
    part = _first_part(report, _ORIGINAL_PARTS)
    if part is None:
        return None
    attached = _subparts(part)
    if attached:
        headers = attached[0]
    else:
        body = part.get_payload(decode=True)
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else ""
        headers = HeaderParser(policy=policy.default).parsestr(text)
    value = _field(headers, "Message-ID")
    if value is None:
        return None
    angled = _ANGLED.search(value)
    return angled[0] if angled else value.split(" ")[0]


def _date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parsedate_to_datetime(value)
    except (ValueError, TypeError):
        return None
