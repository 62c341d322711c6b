"""Untrusted stream text made safe to read and to record: bytes that are not UTF-8, JSON of
any depth or size."""

from __future__ import annotations

import json
from typing import Any

# What the gateway's Redis connections make of a byte that is not UTF-8 (redis_conn.py):
# one lone surrogate per byte, U+DC80 to U+DCFF.
_SURROGATES = range(0xD800, 0xE000)
_ESCAPED_BYTES = range(0xDC80, 0xDD00)


def not_utf8_at(text: str) -> int | None:
    """The offset of the first byte of `text` that was not UTF-8 as it came from Redis,
    or None if all of it was."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return len(text[: exc.start].encode("utf-8", "surrogateescape"))
    return None


def escaped(text: str) -> str:
    """`text` with every byte that was not UTF-8 written `\\xNN`, and any other lone
    surrogate (from a JSON `\\uD800` escape) written `\\uNNNN`: what remains can be
    written to Redis, to a log or to a terminal, and still shows what came."""
    if text.isascii():
        return text
    return "".join(_escaped_char(char) if ord(char) in _SURROGATES else char for char in text)


def _escaped_char(char: str) -> str:
    code = ord(char)
    if code in _ESCAPED_BYTES:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def json_object(raw: str) -> dict[str, Any] | None:
    """`raw` read as a JSON object, or None if it is not one, however it fails (not JSON,
    nested too deeply, a number of thousands of digits)."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


MAX_NAMED_ID = 200
"""The longest job id, kind or account named from an entry that is not a valid job (a
valid id is at most 200 characters): a longer one is not an id."""


def text_field(value: object, max_length: int) -> str | None:
    """`value` if it is text that can be recorded as it is (valid text, at most
    `max_length` characters), else None."""
    if isinstance(value, str) and len(value) <= max_length and escaped(value) == value:
        return value
    return None
