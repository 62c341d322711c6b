"""One classification rule and what it matches: an enhanced status code, a reply-code range,
a case-insensitive pattern on the reply text (pure; patterns run on RE2, in linear time)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import re2

from gateway.bounce_classes import BounceClass

# The part of a reply read by the patterns: SMTP replies are lines of at most 512 octets
# (RFC 5321), so a longer text is a report's body or garbage, and its cost stays bounded.
TEXT_READ: Final = 8192
# "5.1.1", "X.7.1" (either class), "5.7.*" (any detail).
STATUS_FORM: Final = re.compile(r"^([245X])\.(\d{1,3}|\*)\.(\d{1,3}|\*)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class StatusCode:
    """An enhanced status code (RFC 3463): class 2, 4 or 5, subject, detail."""

    klass: str
    subject: int
    detail: int


@dataclass(frozen=True, slots=True)
class StatusPattern:
    """What a rule's `status` matches; None stands for any value of that part."""

    klass: str | None
    subject: int | None
    detail: int | None

    @classmethod
    def parse(cls, written: str) -> StatusPattern | None:
        """The pattern as written in a rule file ("5.1.1", "X.7.1", "5.7.*"), or None."""
        found = STATUS_FORM.match(written)
        if found is None:
            return None
        klass, subject, detail = found.groups()
        return cls(
            None if klass.upper() == "X" else klass,
            None if subject == "*" else int(subject),
            None if detail == "*" else int(detail),
        )

    def matches(self, code: StatusCode) -> bool:
        return (
            self.klass in (None, code.klass)
            and self.subject in (None, code.subject)
            and self.detail in (None, code.detail)
        )


def compile_pattern(pattern: str) -> re2._Regexp[str]:
    """A rule's pattern compiled case-insensitively; re2.error if RE2 refuses it (a syntax
    error, or what only a backtracking engine does: backreferences, lookaround)."""
    options = re2.Options()
    options.case_sensitive = False
    # The error is raised to the caller, which names the file and key: not logged by RE2.
    options.log_errors = False
    return re2.compile(pattern, options)


@dataclass(frozen=True, slots=True)
class Rule:
    """A class given to the replies that match all of the rule's criteria (at least one)."""

    name: str
    bounce_class: BounceClass
    source: str
    status: StatusPattern | None = None
    codes: tuple[int, int] | None = None
    """The lowest and highest reply code matched, both included."""
    pattern: re2._Regexp[str] | None = None

    def matches(self, code: int, status: StatusCode | None, text: str) -> bool:
        """Whether the reply (its code, its enhanced status code if any, its text) matches."""
        if self.status is not None and (status is None or not self.status.matches(status)):
            return False
        if self.codes is not None and not self.codes[0] <= code <= self.codes[1]:
            return False
        return self.pattern is None or self.pattern.search(text[:TEXT_READ]) is not None
