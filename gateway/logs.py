"""Structured logs: one line per event, `LEVEL logger: message key=value ...`, journald-aware.

A line reads::

    2026-03-01T09:30:00.123+01:00 WARNING gateway.worker: job failed job=b1 reason="451 busy"

- The key=value pairs are the `extra=` fields of the call
  (`log.warning("job failed", extra={"job": job.id})`), quoted as in logfmt (JSON string
  quoting) when a value is empty or holds spaces, quotes or `=`. An exception's traceback
  is the last pair, `exc="Traceback ..."`.
- Under systemd, when standard error is the journal stream that $JOURNAL_STREAM names,
  the time is left out (journald stamps every line) and the line starts with its syslog
  priority, `<4>WARNING gateway.worker: ...`, which journald stores as the entry's
  PRIORITY (so `journalctl -p warning` selects it) and removes from the text.
- Line breaks inside a message are written `\\n`, so that an event is always one line
  (one journal entry).
- No secrets: a password in a URL (`scheme://user:password@host`) is written `***`, and
  so is the value of any key naming a password, secret or token. No message bodies:
  callers log ids, sizes, codes and addresses, never the content of a mail or a text.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import datetime
from typing import Any, TextIO

# Attributes every LogRecord has; any other one came from the call's `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
# Up to the last @ of the authority: a password may hold an unescaped @.
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^/\s]+@")
_SECRET_KEY = re.compile(r"password|secret|token", re.IGNORECASE)
_NEEDS_QUOTES = re.compile(r'[\s"=]|^$')
# Syslog priorities (RFC 5424) of the logging levels, as journald reads them.
_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def redact(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***."""
    # Most lines hold no URL: looking for one costs the pattern a try at every position.
    if "://" not in text:
        return text
    return _URL_PASSWORD.sub(r"\1***@", text)


def _value(key: str, value: Any) -> str:
    text = "***" if _SECRET_KEY.search(key) else redact(str(value))
    return json.dumps(text, ensure_ascii=False) if _NEEDS_QUOTES.search(text) else text


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


class LineFormatter(logging.Formatter):
    """One line per record, as the module's docstring says; `journal`: for journald."""

    def __init__(self, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        pairs = [(key, value) for key, value in record.__dict__.items() if key not in _STANDARD]
        if record.exc_info:
            pairs.append(("exc", self.formatException(record.exc_info)))
        if record.stack_info:
            pairs.append(("stack", record.stack_info))
        line = f"{record.levelname} {record.name}: {_one_line(redact(record.getMessage()))}"
        if pairs:
            line += " " + " ".join(f"{key}={_value(key, value)}" for key, value in pairs)
        if self.journal:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{line}"
        when = datetime.fromtimestamp(record.created).astimezone()
        return f"{when.isoformat(timespec='milliseconds')} {line}"


def writes_to_journal(stream: TextIO) -> bool:
    """True when `stream` is the journal stream systemd names in $JOURNAL_STREAM
    ("device:inode"), as systemd.exec(5) says to check: a program started from a unit's
    shell may have been given another standard error."""
    expected = os.environ.get("JOURNAL_STREAM")
    if not expected:
        return False
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError):  # no file descriptor (a StringIO, a closed stream)
        return False
    return expected == f"{status.st_dev}:{status.st_ino}"


def setup(stream: TextIO | None = None, level: int | str = logging.INFO) -> None:
    """Log to `stream` (default: standard error) in this format, at `level` until the
    configuration's log.level is applied. As logging.basicConfig, it changes nothing when
    the root logger has handlers already."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LineFormatter(journal=writes_to_journal(stream)))
    logging.basicConfig(level=level, handlers=[handler])
