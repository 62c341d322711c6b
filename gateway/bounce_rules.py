"""Which class a negative outcome is in, from its reply: the mail administrator's rules
first, then the shipped ones (gateway/bounce_rules.toml): RFC 3463 enhanced status codes
that carry a class, the reply texts of the big mailbox providers, the generic codes (pure)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from gateway.bounce_classes import BounceClass
from gateway.bounce_matching import Rule, StatusCode
from gateway.bounce_rule_files import shipped_rules

# An enhanced status code (RFC 3463) at the start of the reply text, as servers write it
# after the reply code ("550 5.1.1 ...", "550-5.1.1 ...", "#5.1.1 ...").
_ENHANCED: Final = re.compile(r"^\s*(?:[245]\d\d[ -])?\s*#?([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True, slots=True)
class Classified:
    """The class of one outcome, whether it is permanent, and the rule that decided."""

    bounce_class: BounceClass
    permanent: bool
    rule: str


def classify(code: int, text: str, rules: Sequence[Rule] | None = None) -> Classified:
    """The class of an SMTP reply (`code` 0: no reply at all, a timeout or a refused
    connection) or of a delivery report's status and diagnostic, by the first of `rules`
    (the configured ones, else the shipped ones) that matches."""
    permanent = 500 <= code < 600
    found = _ENHANCED.match(text)
    status = None
    if found is not None:
        status = StatusCode(found[1], int(found[2]), int(found[3]))
        permanent = status.klass == "5"
    for rule in shipped_rules() if rules is None else rules:
        if rule.matches(code, status, text):
            return Classified(rule.bounce_class, permanent, rule.name)
    if code == 0 or not permanent:
        return Classified("transient", False, "a temporary reply")
    return Classified("unknown", permanent, "no rule")
