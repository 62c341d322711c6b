"""The MIME message of a notification: headers, text and HTML bodies, calendar invitation."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.generator import BytesGenerator
from email.message import Message
from email.policy import Policy
from email.utils import format_datetime
from io import BytesIO
from typing import Final, Literal

from gateway.errors import PermanentFailure
from outbound.headers import mailbox, unstructured

_MESSAGE_ID = re.compile(r"<[!#-;=?-~]+@[A-Za-z0-9.-]+>")
_URL = re.compile(r"[!#-;=?-~]{1,900}")
# Four colon-separated fields of printable ASCII without spaces (Gmail: "a:b:c:SenderId").
_FEEDBACK_ID = re.compile(r"[!-9;-~]{1,200}(?::[!-9;-~]{1,200}){3}")
# A CR or LF that does not start a folded line (CRLF then white space): a new header.
_BREAK = re.compile(r"\r(?!\n[ \t])|(?<!\r)\n")
_MAX_LINE: Final = 998


class _AsWritten(Policy):
    """The policy compose() builds and writes messages with: every header value is handed
    over already encoded (RFC 2047, by outbound.headers) and folded, so it is
    stored and written as it is. Unlike policy.SMTP (EmailPolicy) there is no header_factory:
    nothing is parsed into header objects and re-folded, which made compose() ~10x slower;
    unlike compat32 nothing is re-folded by email.header either.

    fold() is the one door every header goes out through: it refuses (ValueError) a value
    that is not ASCII, holds a CR or LF that does not start a folded line, or makes a line
    longer than RFC 5322's 998 octets; compose() never makes one (tests/test_compose.py).
    """

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        # As compat32 does; compose() never parses with this policy.
        name, value = sourcelines[0].split(":", 1)
        value = value.lstrip(" \t") + "".join(sourcelines[1:])
        return name, value.rstrip("\r\n")

    def header_store_parse(self, name: str, value: str) -> tuple[str, str]:
        return name, value

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value

    def fold(self, name: str, value: str) -> str:
        if not value.isascii() or _BREAK.search(value):
            raise ValueError(f"{name} header would not be one ASCII header field: {value!r}")
        line = f"{name}: {value}"
        if len(line) > _MAX_LINE and any(len(part) > _MAX_LINE for part in line.split("\r\n")):
            raise ValueError(f"{name} header has a line over {_MAX_LINE} octets")
        return line + self.linesep

    def fold_binary(self, name: str, value: str) -> bytes:
        return self.fold(name, value).encode("ascii")


_POLICY: Final = _AsWritten(linesep="\r\n")


class _Generator(BytesGenerator):
    """BytesGenerator writing each payload in one piece. compose() makes every payload with
    CRLF line ends already, and only of ASCII; the stock _write_lines splits it into lines
    to write each followed by CRLF (the same bytes, a third of compose()'s time)."""

    def _write_lines(self, lines: str) -> None:
        self.write(lines)


@dataclass(frozen=True, slots=True)
class MailSpec:
    """Everything one message says; compose() turns it into bytes."""

    from_name: str
    from_address: str
    to: str
    to_name: str | None
    reply_to: str
    subject: str
    text: str
    html: str | None
    message_id: str
    date: datetime
    ics: bytes | None = None
    ics_method: Literal["REQUEST", "CANCEL"] = "REQUEST"
    list_unsubscribe: tuple[str, str] | None = None
    feedback_id: str | None = None


def feedback_id(kind: str, account: str, sender_domain: str) -> str:
    """The Feedback-ID of a notification (Gmail's feedback loop: up to three identifiers,
    then the sender's, colon-separated), so that a complaint rate shown by a mailbox
    provider is tied to a kind, an account and a sender domain. None of the three may hold
    a colon: kinds are names, account ids and domains are checked for their characters."""
    return f"{kind}:{account}:{sender_domain}:mailgw"


def compose(spec: MailSpec) -> bytes:
    """The message as bytes, CRLF line ends, ready to sign and send.

    Raises PermanentFailure if an address, the Message-ID or an unsubscribe URL is unusable,
    or a name or the subject is not one line (outbound.headers).
    """
    # email.message.Message under _AsWritten: headers as compose() writes them, payloads
    # already transfer-encoded, BytesGenerator lays out the MIME tree.
    message = Message(policy=_POLICY)
    message["From"] = mailbox(spec.from_name, spec.from_address)
    message["To"] = mailbox(spec.to_name, spec.to)
    message["Reply-To"] = mailbox(spec.from_name, spec.reply_to)
    message["Subject"] = unstructured(spec.subject, "Subject")
    message["Date"] = format_datetime(spec.date)
    if not _MESSAGE_ID.fullmatch(spec.message_id):
        raise PermanentFailure(f"not a Message-ID: {spec.message_id!r}")
    message["Message-ID"] = spec.message_id
    # Once, at the top: MIME-Version belongs to the message, not to its parts.
    message["MIME-Version"] = "1.0"
    # RFC 3834: an automatic message; vacation responders must not answer it.
    message["Auto-Submitted"] = "auto-generated"
    if spec.list_unsubscribe is not None:
        https, mailto = spec.list_unsubscribe
        if not (https.startswith("https://") and mailto.startswith("mailto:")):
            raise PermanentFailure("List-Unsubscribe needs an https URL and a mailto URL")
        if not (_URL.fullmatch(https) and _URL.fullmatch(mailto)):
            raise PermanentFailure("List-Unsubscribe URLs must be printable ASCII, without <>")
        # A URL can only be split between its angle brackets, never inside (RFC 2369).
        message["List-Unsubscribe"] = f"<{https}>,\r\n <{mailto}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if spec.feedback_id is not None:
        if not _FEEDBACK_ID.fullmatch(spec.feedback_id):
            raise PermanentFailure(f"not a Feedback-ID: {spec.feedback_id!r}")
        message["Feedback-ID"] = spec.feedback_id
    _body(message, spec)
    out = BytesIO()
    _Generator(out, mangle_from_=False, policy=_POLICY).flatten(message)
    return out.getvalue()


def _body(message: Message, spec: MailSpec) -> None:
    # The structure Google Calendar itself sends, so Gmail, Outlook and Apple Mail all show
    # the invitation: multipart/mixed holding multipart/alternative (text, HTML, then the
    # text/calendar part with its method, which Outlook and Gmail read as the invitation),
    # and the same .ics as an attachment for clients that only import attached files.
    #
    # Transfer encodings: 7-bit only (the relay does not ask for 8BITMIME), and for each text
    # part the shorter of quoted-printable and base64, as Python's set_content chooses:
    # QP for mostly Latin text, base64 for other scripts. Shorter matters for DKIM, not only
    # on the wire: DKIM's relaxed body canonicalization and hash (outbound/dkim_relaxed.py)
    # cost follows the body's length. All base64 was measured (bench/build.py, with dkimpy's
    # canonicalization then): 9.4 KB of body instead of 7.7 KB for the sample confirmation,
    # and ~0.12 ms more per dual signature than QP. The boundaries begin with
    # "=_", which neither encoding can produce, so no line of a part can be a boundary.
    alternatives = [_text_part("plain", spec.text)]
    if spec.html is not None:
        alternatives.append(_text_part("html", spec.html))
    if spec.ics is not None:
        alternatives.append(
            _text_part("calendar", spec.ics.decode("utf-8"), f"; method={spec.ics_method}")
        )
    body = alternatives[0] if len(alternatives) == 1 else _multipart("alternative", alternatives)
    if spec.ics is not None:
        attachment = Message(policy=_POLICY)
        attachment["Content-Type"] = 'application/ics; name="invite.ics"'
        attachment["Content-Disposition"] = 'attachment; filename="invite.ics"'
        attachment["Content-Transfer-Encoding"] = "base64"
        attachment.set_payload(_base64(spec.ics))
        body = _multipart("mixed", [body, attachment])
    # The top part's headers and content become the message's.
    for name, value in body.raw_items():
        message[name] = value
    message.set_payload(body.get_payload())


def _text_part(subtype: str, text: str, params: str = "") -> Message:
    part = Message(policy=_POLICY)
    part["Content-Type"] = f"text/{subtype}; charset=utf-8{params}"
    # Canonical form (RFC 2045): CRLF line ends, the last line ended too.
    data = b"\r\n".join(text.encode("utf-8").splitlines()) + b"\r\n"
    # binascii's QP: lines of at most 76 octets (soft breaks "=\r\n"), "=", controls,
    # 8-bit octets, trailing white space and a lone "." encoded; CRLF line ends kept.
    quoted = binascii.b2a_qp(data, istext=True)
    characters = (len(data) + 2) // 3 * 4
    if len(quoted) <= characters + (characters + 75) // 76 * 2:  # the base64 form's length
        part["Content-Transfer-Encoding"] = "quoted-printable"
        part.set_payload(quoted.decode("ascii"))
    else:
        part["Content-Transfer-Encoding"] = "base64"
        part.set_payload(_base64(data))
    return part


def _base64(data: bytes) -> str:
    # lines of 76 characters (RFC 2045), CRLF after each
    return base64.encodebytes(data).decode("ascii").replace("\n", "\r\n")


def _multipart(subtype: str, parts: list[Message]) -> Message:
    part = Message(policy=_POLICY)
    # "=_" never occurs in quoted-printable or base64 text (see _body): no part can hold
    # this boundary; the random rest makes the two multiparts' boundaries differ.
    part["Content-Type"] = f'multipart/{subtype}; boundary="=_{secrets.token_hex(12)}"'
    for child in parts:
        part.attach(child)
    return part
