"""Header checks of composed messages: RFC 2047 and 5322 limits, and readers independent of
ours (Python's RFC 2047 decoder, mailauth with libmime, Perl's MailTools and Encode).

Their fixtures, `mailauth` and `mailtools`, are in conftest.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from email.header import decode_header, make_header
from email.utils import getaddresses
from pathlib import Path
from typing import Any

VERIFIERS = Path(__file__).resolve().parent / "verifiers"
ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[QqBb]\?[^?\s]*\?=")
ADJACENT_ENCODED_WORDS = re.compile(r"\?=\s+=\?")
NAMED = (b"from", b"to", b"reply-to", b"subject")


def expected(text: str) -> str:
    """What a name or subject reads as once sent: runs of white space as one space, none at
    either end; nothing else changes."""
    return re.sub(r"\s{2,}", " ", text).strip()


def check_lines(data: bytes) -> None:
    """RFC 2047 and 5322 in the headers made from names and the subject: encoded words of
    at most 75 characters, lines holding one of at most 76, other lines of at most 78 but
    for an address alone on its line (it cannot be folded); no line of the message over
    998."""
    head = data.split(b"\r\n\r\n", 1)[0]
    for field in re.split(rb"\r\n(?![ \t])", head):
        if field.split(b":", 1)[0].lower() not in NAMED:
            continue
        assert all(len(word) <= 75 for word in ENCODED_WORD.findall(field)), field
        for line in field.split(b"\r\n"):
            limit = 76 if ENCODED_WORD.search(line) else 78
            assert len(line) <= limit or re.fullmatch(rb" <[^<>\s]+>", line), field
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def rfc2047_name(field: str) -> str:
    """The display name of a header holding one address, decoded as RFC 2047 says (section
    6.2: the white space between adjacent encoded words is not text), by the email
    package's own decoder."""
    [(name, _)] = getaddresses(["".join(field.splitlines())])
    return str(make_header(decode_header(name))) if name else ""


def _run(command: list[str], message: bytes) -> dict[str, Any]:
    result = subprocess.run(command, input=message, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def mailauth_headers(node: str, message: bytes) -> dict[str, Any]:
    """The fields, From, To, Reply-To and Subject as mailauth, nodemailer and libmime read
    them (tests/verifiers/parse_headers.mjs)."""
    return _run([node, str(VERIFIERS / "parse_headers.mjs")], message)


def mailtools_headers(perl: str, message: bytes) -> dict[str, Any]:
    """The same as Perl's MailTools and Encode read them (tests/verifiers/parse_headers.pl)."""
    return _run([perl, str(VERIFIERS / "parse_headers.pl")], message)
