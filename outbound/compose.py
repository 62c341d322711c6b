"""The MIME message of a notification: headers, text and HTML bodies, calendar invitation."""

from __future__ import annotations

import base64
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import MIMEPart
from email.utils import format_datetime
from typing import Final, Literal

from gateway.errors import PermanentFailure

# Raw headers we fold ourselves (From, To, List-Unsubscribe) are kept exactly as written;
# header objects are folded by the policy as usual.
SMTP_POLICY: Final = policy.SMTP.clone(refold_source="none")

_WHITE_RUN = re.compile(r"\s{2,}")
_MESSAGE_ID = re.compile(r"<[!#-;=?-~]+@[A-Za-z0-9.-]+>")
_URL = re.compile(r"[!#-;=?-~]{1,900}")
# RFC 5322 atext: such words need neither quoting nor encoding in a display name.
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
# RFC 2047 limits an encoded word to 75 characters; longer ones are read by every decoder we
# know, and keeping a run in one word keeps its spaces (see _phrase). Lines stay far below
# the 998-octet limit of RFC 5322.
_MAX_ENCODED: Final = 700
_MAX_QUOTED: Final = 700
_FOLD_AT: Final = 70
_HEADER_NAME: Final = len("Reply-To")
# Characters a 'Q' encoded word may carry as they are in a phrase (RFC 2047 section 5 (3)).
_Q_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")


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


def compose(spec: MailSpec) -> bytes:
    """The message as bytes, CRLF line ends, ready to sign and send.

    Raises PermanentFailure if an address, the Message-ID or an unsubscribe URL is unusable.
    """
    # MIMEPart rather than EmailMessage: the latter repeats MIME-Version in every sub-part.
    message = MIMEPart(policy=SMTP_POLICY)
    message.set_raw("From", mailbox(spec.from_name, spec.from_address))
    message.set_raw("To", mailbox(spec.to_name, spec.to))
    message.set_raw("Reply-To", mailbox(None, spec.reply_to))
    message["Subject"] = " ".join(_printable(spec.subject).split())
    message["Date"] = format_datetime(spec.date)
    if not _MESSAGE_ID.fullmatch(spec.message_id):
        raise PermanentFailure(f"not a Message-ID: {spec.message_id!r}")
    message["Message-ID"] = spec.message_id
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
        message.set_raw("List-Unsubscribe", f"<{https}>,\r\n <{mailto}>")
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    _body(message, spec)
    return message.as_bytes()


def _body(message: MIMEPart, spec: MailSpec) -> None:
    # The structure Google Calendar itself sends, so Gmail, Outlook and Apple Mail all show
    # the invitation: multipart/mixed holding multipart/alternative (text, HTML, then the
    # text/calendar part with its method, which Outlook and Gmail read as the invitation),
    # and the same .ics as an attachment for clients that only import attached files.
    message.set_content(spec.text, subtype="plain", charset="utf-8")
    if spec.html is not None:
        message.add_alternative(spec.html, subtype="html", charset="utf-8")
    if spec.ics is None:
        return
    ics = spec.ics.decode("utf-8")
    message.add_alternative(
        ics, subtype="calendar", charset="utf-8", params={"method": spec.ics_method}
    )
    message.make_mixed()
    message.add_attachment(
        spec.ics,
        maintype="application",
        subtype="ics",
        filename="invite.ics",
        params={"name": "invite.ics"},
    )


def mailbox(name: str | None, addr_spec: str) -> str:
    """`Name <addr>` for a header, the name quoted or encoded so it can never be read as
    another address or header (CR, LF and other control characters are dropped first)."""
    local, at, domain = addr_spec.rpartition("@")
    if at and not domain.isascii():
        # An internationalized domain travels as its ASCII (punycode) form.
        try:
            addr_spec = f"{local}@{domain.encode('idna').decode('ascii')}"
        except UnicodeError:
            raise PermanentFailure(f"not an e-mail address: {addr_spec!r}") from None
    if not addr_spec.isascii():
        # A non-ASCII local part needs SMTPUTF8 end to end, which the relay does not promise.
        raise PermanentFailure(
            f"addresses with a non-ASCII local part are not supported: {addr_spec!r}"
        )
    try:
        address = Address(addr_spec=addr_spec)
    except (ValueError, IndexError) as exc:
        raise PermanentFailure(f"not an e-mail address: {addr_spec!r} ({exc})") from None
    if address.addr_spec != addr_spec or "\n" in addr_spec or "\r" in addr_spec:
        raise PermanentFailure(f"not an e-mail address: {addr_spec!r}")
    # Runs of white space are shown as one space by mail clients, and parsers disagree on keeping
    # them (or white space at either end) inside encoded words: the name is sent with single
    # spaces and no white space around it, nothing else altered.
    display = _WHITE_RUN.sub(" ", _printable(name or "")).strip()
    if not display:
        return f"<{addr_spec}>"
    phrase = _phrase(display)
    # Keep lines within 78 octets: a long name goes on its own line(s), the address after.
    fits = "\r\n" not in phrase and len(phrase) + len(addr_spec) + _HEADER_NAME + 3 <= 78
    return f"{phrase} <{addr_spec}>" if fits else f"{phrase}\r\n <{addr_spec}>"


def _printable(text: str) -> str:
    # Defense in depth: the account settings already refuse these in a business name.
    return "".join(
        " " if char == "\t" else char
        for char in text
        if unicodedata.category(char) not in ("Cc", "Zl", "Zp") or char == "\t"
    )


def _phrase(display: str) -> str:
    words = display.split(" ")
    if all(_is_atom(word) for word in words):
        return _fold(words)
    # Python decodes encoded words even inside quotes (as many readers do): encode those.
    if display.isascii() and "=?" not in display and len(display) <= _MAX_QUOTED:
        escaped = display.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    # Atoms stay readable as they are; each run of other words is one encoded word with its
    # spaces inside, because decoders drop the white space between adjacent encoded words
    # (RFC 2047 section 6.2) while Python's parser keeps it: one word per run reads the same
    # in both. A run is split only when it would not fit on a line.
    tokens: list[str] = []
    run: list[str] = []
    for word in [*words, None]:
        if word is not None and not _is_atom(word):
            run.append(word)
            continue
        if run:
            tokens.extend(_encoded_words(" ".join(run)))
            run = []
        if word is not None:
            tokens.append(word)
    return _fold(tokens)


def _is_atom(word: str) -> bool:
    # A word that looks like an encoded word would be decoded by the reader: encode it too.
    return _ATOM.fullmatch(word) is not None and "=?" not in word


def _fold(tokens: list[str]) -> str:
    lines = [tokens[0]]
    for token in tokens[1:]:
        if len(lines[-1]) + 1 + len(token) > _FOLD_AT:
            lines.append(token)
        else:
            lines[-1] += " " + token
    return "\r\n ".join(lines)


def _encoded_words(text: str) -> list[str]:
    # Whole characters per word, as RFC 2047 requires; Q keeps mostly Latin names readable,
    # B is shorter for other scripts and emoji.
    words: list[str] = []
    current = ""
    for char in text:
        if current and len(_encode(current + char)) > _MAX_ENCODED:
            words.append(_encode(current))
            current = ""
        current += char
    words.append(_encode(current))
    return words


def _encode(text: str) -> str:
    q = "".join(_q(char) for char in text)
    b = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return f"=?utf-8?q?{q}?=" if len(q) <= len(b) else f"=?utf-8?b?{b}?="


def _q(char: str) -> str:
    if char in _Q_SAFE:
        return char
    if char == " ":
        return "_"
    return "".join(f"={byte:02X}" for byte in char.encode("utf-8"))
