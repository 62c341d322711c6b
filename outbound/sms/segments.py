"""How long a text message is: its encoding, its length in units, and the parts it is sent in."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate, pairwise
from typing import Final

from gateway.sms_provider import Encoding

MAX_CHARACTERS: Final = 1600

# GSM 03.38's basic table in code order; "\x1b" (0x1B) is the escape to the extension table,
# not a character of its own.
_BASIC_TABLE: Final = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_ESCAPE: Final = 0x1B
_EXTENSION_TABLE: Final = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
_BASIC: Final = frozenset(_BASIC_TABLE) - {chr(_ESCAPE)}
_EXTENSION: Final = frozenset(_EXTENSION_TABLE)
_GSM7: Final = _BASIC | _EXTENSION
_SEPTETS: Final = {
    **{ord(char): chr(code) for code, char in enumerate(_BASIC_TABLE) if code != _ESCAPE},
    **{ord(char): chr(_ESCAPE) + chr(code) for char, code in _EXTENSION_TABLE.items()},
}

# (one part, each part of a concatenated message): the user data header of concatenation
# takes 7 septets / 3 UTF-16 units of every part.
_LIMITS: Final[dict[Encoding, tuple[int, int]]] = {"gsm7": (160, 153), "ucs2": (70, 67)}


class TextTooLong(ValueError):
    """A text over MAX_CHARACTERS characters."""

    def __init__(self, length: int) -> None:
        self.length = length
        super().__init__(
            f"the text has {length} characters; a text message has at most {MAX_CHARACTERS}"
        )


@dataclass(frozen=True, slots=True)
class Segments:
    """A text's encoding, its length in GSM-7 septets or UTF-16 code units, and its parts."""

    encoding: Encoding
    units: int
    parts: int


def encoding_of(text: str) -> Encoding:
    """gsm7 when every character is in GSM 03.38 (basic or extension table), else ucs2."""
    return "gsm7" if _GSM7.issuperset(text) else "ucs2"


def count(text: str) -> Segments:
    """The encoding, units and number of parts of `text`."""
    encoding = encoding_of(text)
    if encoding == "gsm7":
        units = len(text) + sum(map(text.count, _EXTENSION))
    else:
        # surrogatepass: a lone surrogate (from JSON) is one unit, as it will be sent
        units = len(text.encode("utf-16-le", "surrogatepass")) // 2
    single, each = _LIMITS[encoding]
    if units == 0:
        parts = 0
    elif units <= single:
        parts = 1
    elif units == len(text):
        parts = -(-units // each)
    else:
        # A two-unit character never straddles parts, so a part may hold one unit less.
        parts = len(_part_ends(text, encoding, each))
    return Segments(encoding, units, parts)


def check_length(text: str) -> Segments:
    """count(text); TextTooLong above MAX_CHARACTERS characters."""
    if len(text) > MAX_CHARACTERS:
        raise TextTooLong(len(text))
    return count(text)


def split(text: str) -> list[str]:
    """The parts to send with a concatenation header; [text] when it fits one part, [] for "".

    A GSM-7 extension character (escape and code) and a UTF-16 surrogate pair are one
    character here, so no part ever ends halfway through one.
    """
    segments = count(text)
    if segments.parts <= 1:
        return [text] if text else []
    ends = _part_ends(text, segments.encoding, _LIMITS[segments.encoding][1])
    return [text[start:end] for start, end in pairwise([0, *ends])]


def gsm7_bytes(text: str) -> bytes:
    """`text` in unpacked GSM 03.38: one byte per septet, extension characters escaped."""
    if encoding_of(text) != "gsm7":
        others = "".join(sorted(set(text) - _GSM7))
        raise ValueError(f"not GSM 03.38 characters: {others!r}")
    return text.translate(_SEPTETS).encode("ascii")


def _part_ends(text: str, encoding: Encoding, each: int) -> list[int]:
    # Greedy: each part takes as many whole characters as fit in `each` units.
    if encoding == "gsm7":
        costs = (2 if char in _EXTENSION else 1 for char in text)
    else:
        costs = (2 if char > "\uffff" else 1 for char in text)
    units = list(accumulate(costs))
    ends: list[int] = []
    end = 0
    while end < len(text):
        end = bisect_right(units, (units[end - 1] if end else 0) + each)
        ends.append(end)
    return ends
