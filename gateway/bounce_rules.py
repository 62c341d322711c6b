"""Which class a negative outcome is in, from its reply: RFC 3463 enhanced status codes
first, then the reply-text patterns of the big mailbox providers (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from gateway.bounce_classes import BounceClass

# An enhanced status code (RFC 3463) at the start of the reply text, as servers write it
# after the reply code ("550 5.1.1 ...", "550-5.1.1 ...").
_ENHANCED: Final = re.compile(r"^\s*(?:[245]\d\d[ -])?\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True, slots=True)
class Classified:
    """The class of one outcome, whether it is permanent, and the rule that decided."""

    bounce_class: BounceClass
    permanent: bool
    rule: str


# RFC 3463's subjects and details: X.1.x addresses, X.2.x mailboxes, X.3.x mail systems,
# X.4.x network and routing, X.5.x protocol, X.6.x content, X.7.x security or policy.
_BY_CODE: Final[dict[str, BounceClass]] = {
    "1.1": "invalid_recipient",
    "1.2": "bad_domain",
    "1.3": "invalid_recipient",
    "1.6": "invalid_recipient",
    "1.10": "bad_domain",
    "2.1": "inactive_mailbox",
    "2.2": "mailbox_full",
    "2.3": "message_too_large",
    "3.4": "message_too_large",
    "4.1": "transient",
    "4.2": "transient",
    "4.3": "dns",
    "4.4": "dns",
    "4.7": "transient",
    "5.0": "protocol",
    "5.1": "protocol",
    "5.2": "protocol",
    "5.3": "protocol",
    "5.4": "protocol",
    "6.0": "content",
    "7.0": "policy",
    "7.1": "policy",
    "7.10": "tls",
    "7.23": "authentication",
    "7.24": "authentication",
    "7.25": "authentication",
    "7.26": "authentication",
    "7.27": "authentication",
    "7.28": "rate_limited",
    "7.29": "authentication",
    "7.30": "tls",
    "7.7": "authentication",
    "7.8": "authentication",
}


def classify(code: int, text: str) -> Classified:
    """The class of an SMTP reply (`code` 0: no reply at all, a timeout or a refused
    connection) or of a delivery report's status and diagnostic."""
    permanent = 500 <= code < 600
    found = _ENHANCED.match(text)
    if found is not None:
        permanent = found.group(1) == "5"
        detail = f"{int(found.group(2))}.{int(found.group(3))}"
        if detail in _BY_CODE:
            return Classified(_BY_CODE[detail], permanent, f"RFC 3463 X.{detail}")
    if code == 0 or 400 <= code < 500:
        return Classified("transient", False, "a temporary reply")
    return Classified("unknown", permanent, "no rule")
