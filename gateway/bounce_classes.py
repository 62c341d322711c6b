"""The classes of a negative outcome and what each one does (PRODUCT.md, "Bounces and
suppression"): pure rules, read by the classifier, the handlers, the suppressions and the
metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final, Literal, TypeAlias, get_args

BounceClass: TypeAlias = Literal[
    "invalid_recipient",
    "bad_domain",
    "inactive_mailbox",
    "mailbox_full",
    "message_too_large",
    "content",
    "reputation",
    "policy",
    "authentication",
    "rate_limited",
    "tls",
    "dns",
    "protocol",
    "transient",
    "unknown",
]
BOUNCE_CLASSES: Final[tuple[BounceClass, ...]] = get_args(BounceClass)
Action: TypeAlias = Literal["suppress", "retry", "fail"]


@dataclass(frozen=True, slots=True)
class ClassRules:
    """What one class means and does."""

    meaning: str
    about_the_address: bool
    """The address itself is the problem: a permanent refusal suppresses it (that address
    only, for every business, until the entry expires)."""
    always_temporary: bool
    """Retried until the deadline even when the reply is permanent (a full mailbox, a rate
    limit)."""
    suppressed_for: timedelta | None = None
    """How long an address of this class stays suppressed, by default."""


YEAR: Final = timedelta(days=365)

RULES: Final[dict[BounceClass, ClassRules]] = {
    "invalid_recipient": ClassRules("the mailbox does not exist", True, False, YEAR),
    "bad_domain": ClassRules(
        "the domain does not exist or accepts no mail", True, False, timedelta(days=30)
    ),
    "inactive_mailbox": ClassRules("the mailbox is disabled or inactive", True, False, YEAR),
    "mailbox_full": ClassRules("the mailbox is full", False, True),
    "message_too_large": ClassRules("the message is too large for the server", False, False),
    "content": ClassRules("a content or spam filter refused the message", False, False),
    "reputation": ClassRules("the sender's reputation, IP or domain is blocked", False, False),
    "policy": ClassRules("a policy of the receiving server refused the message", False, False),
    "authentication": ClassRules("SPF, DKIM or DMARC failed", False, False),
    "rate_limited": ClassRules("the receiving server limits our rate", False, True),
    "tls": ClassRules("TLS was required or failed", False, False),
    "dns": ClassRules("a DNS lookup failed", False, False),
    "protocol": ClassRules("the SMTP conversation went wrong", False, False),
    "transient": ClassRules("a temporary failure of the receiving side", False, True),
    "unknown": ClassRules("no rule matched the reply", False, False),
}


def action(bounce_class: BounceClass, permanent: bool) -> Action:
    """What a refusal of `bounce_class` does: only a permanent refusal about the address
    suppresses it; a temporary refusal, or one of a class that is always temporary, is
    retried until the deadline; any other permanent refusal fails that one message."""
    rules = RULES[bounce_class]
    if not permanent or rules.always_temporary:
        return "retry"
    return "suppress" if rules.about_the_address else "fail"
