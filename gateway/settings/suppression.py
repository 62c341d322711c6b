"""[suppression]: how long an address refused for what it is stays suppressed, by class."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field

from gateway.bounce_classes import RULES, BounceClass
from gateway.durations import PositiveDuration
from gateway.settings.types import MODEL_CONFIG


def _default(bounce_class: BounceClass) -> timedelta:
    default = RULES[bounce_class].suppressed_for
    assert default is not None, f"{bounce_class} is a class about the address"
    return default


class SuppressionSettings(BaseModel):
    """How long a bounce of each class about the address keeps it suppressed; an
    administrator may clear an entry sooner (`mailgw suppression remove`)."""

    model_config = MODEL_CONFIG

    invalid_recipient: PositiveDuration = Field(
        _default("invalid_recipient"), description="The mailbox does not exist."
    )
    inactive_mailbox: PositiveDuration = Field(
        _default("inactive_mailbox"), description="The mailbox is disabled or inactive."
    )
    bad_domain: PositiveDuration = Field(
        _default("bad_domain"), description="The domain does not exist or accepts no mail."
    )

    def expiry(self, bounce_class: BounceClass) -> timedelta | None:
        """How long a suppression of `bounce_class` lasts; None for a class that is not about
        the address (none is kept) or has no configured duration."""
        value = getattr(self, bounce_class, None)
        return value if isinstance(value, timedelta) else None
