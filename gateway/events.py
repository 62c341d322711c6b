"""Delivery events: one JSON entry on the events stream per outcome."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from gateway.bounce_classes import BounceClass
from gateway.notification_kinds import Channel

Status = Literal[
    "sent",
    "delivered",
    "deferred",
    "bounced",
    "failed",
    "skipped",
    "suppressed",
    "forwarded",
    "opted_out",
    "opted_in",
    "applied",
    "expired",
]


@dataclass(frozen=True, slots=True)
class Event:
    """One outcome, as the scheduling service reads it from `<prefix>events`."""

    job: str
    kind: str
    status: Status
    at: str
    account: str | None = None
    appointment: str | None = None
    channel: Channel | None = None
    recipient: str | None = None
    reason: str | None = None
    message_id: str | None = None
    bounce_class: BounceClass | None = None
    """The class of a negative outcome (gateway/bounce_classes.py), or of the entry that
    suppressed the message."""

    def to_json(self) -> str:
        fields = {name: getattr(self, name) for name in self.__slots__}
        return json.dumps(
            {k: v for k, v in fields.items() if v is not None},
            ensure_ascii=False,
            separators=(",", ":"),
        )
