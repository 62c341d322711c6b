"""Header values from text: display names and subjects, RFC 2047-encoded and folded."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from email import quoprimime
from email.charset import Charset
from email.headerregistry import Address
from typing import Final

from gateway.errors import PermanentFailure
from gateway.header_text import header_text_problem

# Runs of white space are shown as one space by mail clients, and decoders disagree on
# keeping them (or white space at either end) inside encoded words: they are sent as one
# space, none at either end. (A single non-breaking space is a character like any other.)
_WHITE_RUN = re.compile(r"\s{2,}")
# RFC 5322 atext: such words need neither quoting nor encoding in a display name.
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
# RFC 2047: a line holding an encoded word is at most 76 characters, an encoded word at most
# 75. Every word written (encoded, quoted or plain) is kept to what fits on the first line
# after the longest header name that takes one ("Reply-To: "), so that any word fits on any
# line and none is ever cut: lines stay far below RFC 5322's 998.
_MAX_LINE: Final = 76
_HEADER_NAME: Final = len("Reply-To: ")
_MAX_WORD: Final = _MAX_LINE - _HEADER_NAME
_UTF8: Final = Charset("utf-8")
_CHROME: Final = len("=?utf-8?q??=")


class AddressRefused(PermanentFailure):
    """An address no message can be composed for (it fails its recipient, not the job)."""


@functools.lru_cache(maxsize=1024)
def mailbox(name: str | None, addr_spec: str) -> str:
    """`Name <addr>` for a From, To or Reply-To header: the name plain, quoted or encoded
    so that it can never be read as another address or header.

    Raises AddressRefused for an address that cannot be written, PermanentFailure for a
    name that is not one line (the account settings and jobs refuse those first).
    Cached: a pure function, and From and Reply-To are the same for every message of an
    account (a refusal raises again, exceptions are not cached)."""
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
    words = _words(name or "", "display name")
    angle = f"<{addr_spec}>"
    if not words:
        return angle
    lines = _fold(_phrase(words), _HEADER_NAME).split("\r\n ")
    # The address after the name where it fits, else alone on the next line.
    width = (_HEADER_NAME if len(lines) == 1 else 1) + len(lines[-1]) + 1 + len(angle)
    lines[-1:] = [f"{lines[-1]} {angle}"] if width <= _MAX_LINE else [lines[-1], angle]
    return "\r\n ".join(lines)


def unstructured(text: str, name: str) -> str:
    """The value of the unstructured header `name` (Subject): printable ASCII words as they
    are, runs of other words RFC 2047-encoded as in display names, folded between words.

    Raises PermanentFailure for text that is not one line."""
    words = _words(text, name)
    if not words:
        return ""
    return _fold(_encode_runs(words, _is_plain), len(name) + 2)


def _words(text: str, what: str) -> list[str]:
    problem = header_text_problem(text)
    if problem is not None:
        raise PermanentFailure(f"{what} {text[:80]!r}: {problem}")
    single = _WHITE_RUN.sub(" ", text).strip()
    return single.split(" ") if single else []


def _phrase(words: list[str]) -> list[str]:
    if all(_is_atom(word) for word in words):
        return words
    # Python decodes encoded words even inside quotes (as many readers do): encode those.
    display = " ".join(words)
    if display.isascii() and "=?" not in display:
        quoted = '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if len(quoted) <= _MAX_WORD:
            return [quoted]
    # Atoms stay readable as they are, runs of other words are encoded.
    return _encode_runs(words, _is_atom)


def _encode_runs(words: list[str], keep: Callable[[str], bool]) -> list[str]:
    # Words `keep` accepts stay readable as they are; each run of other words is encoded
    # with its spaces inside: decoders drop the white space between adjacent encoded words
    # (RFC 2047 section 6.2), so the words of a run split over several encoded words, and
    # the spaces between them, read back as they were.
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
    # A word that looks like an encoded word would be decoded by the reader: encode it
    # too; so is a word too long for a line (encoded words can be split).
    return _ATOM.fullmatch(word) is not None and "=?" not in word and len(word) <= _MAX_WORD


def _is_plain(word: str) -> bool:
    # In unstructured text any printable ASCII word may stay as it is (white space is
    # not in words), except as in _is_atom.
    return word.isascii() and word.isprintable() and "=?" not in word and len(word) <= _MAX_WORD


def _fold(tokens: list[str], used: int) -> str:
    """The tokens separated by single spaces, in lines of at most _MAX_LINE characters (the
    first after `used` columns of header name): no token is longer than _MAX_WORD."""
    lines = [tokens[0]]
    width = used + len(tokens[0])
    for token in tokens[1:]:
        if width + 1 + len(token) > _MAX_LINE:
            lines.append(token)
            width = 1 + len(token)
        else:
            lines[-1] += " " + token
            width += 1 + len(token)
    return "\r\n ".join(lines)


def _encoded_words(text: str) -> list[str]:
    """`text` as UTF-8 encoded words of at most _MAX_WORD characters, each holding whole
    characters (RFC 2047 section 5), in Q or B, whichever is shorter (the email package's
    choice for UTF-8, which writes each word)."""
    data = text.encode("utf-8")
    if min(quoprimime.header_length(data), _b_length(len(data))) + _CHROME <= _MAX_WORD:
        return [_UTF8.header_encode(text)]  # the usual run of words: one encoded word
    words: list[str] = []
    start = 0
    while start < len(text):
        end = _word_end(text, start)
        words.append(_UTF8.header_encode(text[start:end]))
        start = end
    return words


def _word_end(text: str, start: int) -> int:
    # Where the encoded word that begins at `start` ends: as far as it fits, but after a
    # space if it holds one. Decoders that keep the white space between adjacent encoded
    # words in a display name, against RFC 2047 section 6.2 (Python's email package, CPython
    # gh-128110), then show two spaces where the text has one, rather than a space
    # inside a word.
    q_length = octets = 0
    after_space = start
    for index in range(start, len(text)):
        data = text[index].encode("utf-8")
        q_length += quoprimime.header_length(data)
        octets += len(data)
        if index > start and min(q_length, _b_length(octets)) + _CHROME > _MAX_WORD:
            return after_space if after_space > start else index
        if text[index] == " ":
            after_space = index + 1
    return len(text)


def _b_length(octets: int) -> int:
    # as email.base64mime.header_length, from a count of octets
    return (octets + 2) // 3 * 4
