"""The catalogue of notification kinds: what each one implies, read by everything else."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, TypeAlias, get_args

Channel: TypeAlias = Literal["email", "sms"]
AppointmentKind: TypeAlias = Literal[
    "confirmation", "reminder", "follow_up", "cancellation", "reschedule"
]
"""The kinds planned from an appointment's events: (kind, channel, index) names one."""
PurchaseKind: TypeAlias = Literal[
    "order", "subscription_paid", "subscription_renewal_reminder", "subscription_cancelled"
]
NotificationKind: TypeAlias = Literal[AppointmentKind, PurchaseKind]
Subject: TypeAlias = Literal["appointment", "order", "subscription"]
CalendarMethod: TypeAlias = Literal["REQUEST", "CANCEL"]


@dataclass(frozen=True, slots=True)
class KindRules:
    """What one notification kind implies (PRODUCT.md, "Notification kinds")."""

    channels: tuple[Channel, ...]
    """The channels it goes out on; a text message exists for the reminder only."""
    template: str
    """The service-wide template it renders (`outbound/templates/<locale>/<template>.*`)."""
    subject: Subject
    """The context field describing what it is about, checked against its model."""
    context_fields: tuple[str, ...]
    """Every context field its job may carry; any other reaches templates as `data`."""
    calendar_method: CalendarMethod | None
    """The calendar invitation it carries (iTIP method), or None for none."""
    list_unsubscribe: bool
    """Whether it carries an unsubscribe link and List-Unsubscribe."""
    stopped_by_opt_out: bool
    """Whether a client's unsubscribe or complaint stops it; a hard bounce stops every kind."""


def _appointment(
    kind: AppointmentKind,
    method: CalendarMethod | None,
    *,
    optional: bool = False,
    texted: bool = False,
) -> tuple[NotificationKind, KindRules]:
    channels: tuple[Channel, ...] = ("email", "sms") if texted else ("email",)
    return kind, KindRules(
        channels, kind, "appointment", ("appointment",), method, optional, optional
    )


def _purchase(
    kind: PurchaseKind, subject: Subject, *more_fields: str
) -> tuple[NotificationKind, KindRules]:
    return kind, KindRules(("email",), kind, subject, (subject, *more_fields), None, False, False)


# PRODUCT.md: reminders and follow-ups are the ones a client may leave (an unsubscribe or a
# complaint stops them, never confirmations, cancellations, reschedules or payment notices);
# the reminder alone also goes out as a text message.
CATALOGUE: Final[Mapping[str, KindRules]] = MappingProxyType(
    dict(
        [
            _appointment("confirmation", "REQUEST"),
            _appointment("reminder", "REQUEST", optional=True, texted=True),
            _appointment("reschedule", "REQUEST"),
            _appointment("cancellation", "CANCEL"),
            _appointment("follow_up", None, optional=True),
            _purchase("order", "order", "product"),
            _purchase("subscription_paid", "subscription"),
            _purchase("subscription_renewal_reminder", "subscription"),
            _purchase("subscription_cancelled", "subscription", "by"),
        ]
    )
)

NOTIFICATION_KINDS: Final[tuple[NotificationKind, ...]] = get_args(NotificationKind)
APPOINTMENT_KINDS: Final = frozenset(get_args(AppointmentKind))
CONTEXT_FIELDS: Final = frozenset(field for r in CATALOGUE.values() for field in r.context_fields)
"""Context fields checked for their kind; any other key of a job's context is `data`."""
