"""The MIME message of a notification: headers, text and HTML bodies, calendar invitation."""

from __future__ import annotations

import base64
import binascii
import functools
import re
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.generator import BytesGenerator
from email.headerregistry import Address
from email.message import Message
from email.policy import Policy
from email.utils import format_datetime
from io import BytesIO
from typing import Final, Literal

from gateway.errors import PermanentFailure

_WHITE_RUN = re.compile(r"\s{2,}")
_MESSAGE_ID = re.compile(r"<[!#-;=?-~]+@[A-Za-z0-9.-]+>")
_URL = re.compile(r"[!#-;=?-~]{1,900}")
# RFC 5322 atext: such words need neither quoting nor encoding in a display name.
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
# A CR or LF that does not start a folded line (CRLF then white space): a new header.
_BREAK = re.compile(r"\r(?!\n[ \t])|(?<!\r)\n")
# RFC 2047 limits an encoded word to 75 characters; longer ones are read by every decoder we
# know, and keeping a run in one word keeps its spaces (see _phrase). Lines stay far below
# the 998-octet limit of RFC 5322.
_MAX_ENCODED: Final = 700
_MAX_QUOTED: Final = 700
_MAX_LINE: Final = 998
_FOLD_AT: Final = 70
_HEADER_NAME: Final = len("Reply-To")
# Characters a 'Q' encoded word may carry as they are in a phrase (RFC 2047 section 5 (3)).
_Q_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")


class AddressRefused(PermanentFailure):
    """An address no message can be composed for (it fails its recipient, not the job)."""


class _AsWritten(Policy):
    """The policy compose() builds and writes messages with: every header value is handed
    over already encoded (RFC 2047, by mailbox() and _unstructured()) and folded, so it is
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


def compose(spec: MailSpec) -> bytes:
    """The message as bytes, CRLF line ends, ready to sign and send.

    Raises PermanentFailure if an address, the Message-ID or an unsubscribe URL is unusable.
    """
    # email.message.Message under _AsWritten: headers as compose() writes them, payloads
    # already transfer-encoded, BytesGenerator lays out the MIME tree.
    message = Message(policy=_POLICY)
    message["From"] = mailbox(spec.from_name, spec.from_address)
    message["To"] = mailbox(spec.to_name, spec.to)
    message["Reply-To"] = mailbox(spec.from_name, spec.reply_to)
    message["Subject"] = _unstructured(spec.subject, len("Subject: "))
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
    # on the wire: dkimpy's relaxed body canonicalization runs two regular expressions over
    # the whole body for each signature, at ~10 ns a byte whether or not the body has spaces
    # (Python's re engine tries each position), so its cost follows the body's length. All
    # base64 was measured (bench/build.py): 9.4 KB of body instead of 7.7 KB for the sample
    # confirmation, and ~0.12 ms more per dual signature than QP. The boundaries begin with
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


@functools.lru_cache(maxsize=1024)
def mailbox(name: str | None, addr_spec: str) -> str:
    """`Name <addr>` for a header, the name quoted or encoded so it can never be read as
    another address or header (CR, LF and other control characters are dropped first).

    Cached: a pure function, and From and Reply-To are the same for every message of an
    account (a refused address raises again, exceptions are not cached)."""
    local, at, domain = addr_spec.rpartition("@")
    if at and not domain.isascii():
        # An internationalized domain travels as its ASCII (punycode) form.
        try:
            addr_spec = f"{local}@{domain.encode('idna').decode('ascii')}"
        except UnicodeError:
            raise AddressRefused(f"not an e-mail address: {addr_spec!r}") from None
    if not addr_spec.isascii():
        # A non-ASCII local part needs SMTPUTF8 end to end, which the relay does not promise.
        raise AddressRefused(
            f"addresses with a non-ASCII local part are not supported: {addr_spec!r}"
        )
    try:
        address = Address(addr_spec=addr_spec)
    except (ValueError, IndexError) as exc:
        raise AddressRefused(f"not an e-mail address: {addr_spec!r} ({exc})") from None
    # RFC 5321: a path holds at most 256 octets, brackets included.
    if address.addr_spec != addr_spec or not addr_spec.isprintable() or len(addr_spec) > 254:
        raise AddressRefused(f"not an e-mail address: {addr_spec!r}")
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
    if text.isprintable():
        # no Cc, Zl or Zp character, and no tab (Cc) to turn into a space: the usual case
        return text
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
    if display.isascii() and "=?" not in display:
        escaped = display.replace("\\", "\\\\").replace('"', '\\"')
        if len(escaped) <= _MAX_QUOTED:
            return f'"{escaped}"'
    # Atoms stay readable as they are, runs of other words are encoded (_encode_runs).
    return _fold(_encode_runs(words, _is_atom))


def _unstructured(text: str, used: int) -> str:
    """Text for an unstructured header (Subject) whose name and colon take `used` columns:
    printable ASCII words as they are, runs of other words RFC 2047-encoded as in _phrase,
    folded between words. White space runs are sent as one space, none at either end."""
    words = _printable(text).split()
    if not words:
        return ""
    return _fold(_encode_runs(words, _is_plain), used)


def _encode_runs(words: list[str], keep: Callable[[str], bool]) -> list[str]:
    # Words `keep` accepts stay readable as they are; each run of other words is one encoded
    # word with its spaces inside, because decoders drop the white space between adjacent
    # encoded words (RFC 2047 section 6.2) while Python's parser keeps it: one word per run
    # reads the same in both. A run is split only when it would not fit on a line.
    tokens: list[str] = []
    run: list[str] = []
    for word in [*words, None]:
        if word is not None and not keep(word):
            run.append(word)
            continue
        if run:
            tokens.extend(_encoded_words(" ".join(run)))
            run = []
        if word is not None:
            tokens.append(word)
    return tokens


def _is_atom(word: str) -> bool:
    # A word that looks like an encoded word would be decoded by the reader: encode it too;
    # so is a word too long for a line (encoded words are split).
    return _ATOM.fullmatch(word) is not None and "=?" not in word and len(word) <= _MAX_ENCODED


def _is_plain(word: str) -> bool:
    # In unstructured text any printable ASCII word may stay as it is (no white space here:
    # the words come from str.split()), except as in _is_atom.
    return word.isascii() and word.isprintable() and "=?" not in word and len(word) <= _MAX_ENCODED


def _fold(tokens: list[str], used: int = 0) -> str:
    """The tokens separated by single spaces, in lines of at most _FOLD_AT columns where
    tokens allow (the first line has `used` taken by the header's name)."""
    lines = [tokens[0]]
    width = _FOLD_AT - used
    for token in tokens[1:]:
        if len(lines[-1]) + 1 + len(token) > width:
            lines.append(token)
            width = _FOLD_AT
        else:
            lines[-1] += " " + token
    return "\r\n ".join(lines)


def _encoded_words(text: str) -> list[str]:
    # Whole characters per word, as RFC 2047 requires; Q keeps mostly Latin names readable,
    # B is shorter for other scripts and emoji.
    whole = _encode(text)
    if len(whole) <= _MAX_ENCODED:
        return [whole]
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
