"""One business's settings (an account file or an account.upsert job), and its effective rules."""

from __future__ import annotations

import zoneinfo
from datetime import timedelta
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from gateway.durations import Duration, between
from gateway.fields import (
    AccountId,
    AccountItemId,
    EmailAddress,
    LoadableTimeZone,
    NotBlank,
    TemplateLocale,
)
from gateway.header_text import HeaderText
from gateway.settings import MODEL_CONFIG, DnsName
from gateway.validation_errors import Loc, invalid, repeats

Plan = Literal["emerging", "growing", "powerhouse"]

MAX_REMINDERS: Final = 3
MAX_FOLLOW_UPS: Final = 6
FOLLOW_UPS_BY_PLAN: Final[dict[str, int]] = {"emerging": 1, "growing": 6, "powerhouse": 6}
SMS_PLANS: Final = frozenset({"growing", "powerhouse"})
MAX_SMS_TEXT: Final = 1600


Name = Annotated[HeaderText, NotBlank]
"""Free text shown to clients, kept exactly as written, on one line: it reaches headers
(the From display name, subjects)."""


def _country(value: str) -> str:
    # Imported here: phonenumbers is slow to import, and `mailgw queue` loads the
    # configuration (accounts without a country need none of it).
    import phonenumbers

    code = value.upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(
            f"unknown country {value!r}: use a two-letter ISO 3166 code such as FR or US"
        )
    return code


class Calendar(BaseModel):
    """A staff member's or room's schedule."""

    model_config = MODEL_CONFIG

    id: AccountItemId = Field(description="The calendar's id in the scheduling service.")
    name: Name = Field(description="Shown to clients.")
    reply_to: EmailAddress | None = Field(
        None, description="Where clients' replies go for this calendar; default: the owner."
    )


class AppointmentType(BaseModel):
    """What is booked."""

    model_config = MODEL_CONFIG

    id: AccountItemId = Field(description="The type's id in the scheduling service.")
    name: Name = Field(description="Shown to clients.")
    notifications: bool = Field(True, description="False: nothing is sent for this type.")


class Reminder(BaseModel):
    """An e-mail reminder before the appointment."""

    model_config = MODEL_CONFIG

    offset: Annotated[Duration, between(minimum=timedelta(hours=1))] = Field(
        description='How long before the start, at least 1 hour ("24h", "2d").'
    )


class SmsReminder(BaseModel):
    """The text-message reminder (plans growing and powerhouse)."""

    model_config = MODEL_CONFIG

    enabled: bool = Field(False, description="Send a text reminder.")
    offset: Annotated[Duration, between(timedelta(minutes=15), timedelta(days=14))] = Field(
        timedelta(hours=24), description="How long before the start, from 15m to 14d."
    )
    text: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_SMS_TEXT,
        description="Own text instead of the default one; used only if the account is verified.",
    )


class FollowUp(BaseModel):
    """An e-mail after the appointment."""

    model_config = MODEL_CONFIG

    delay: Annotated[Duration, between(timedelta(days=0.01), timedelta(days=365))] = Field(
        description="How long after the start, from 0.01 day (14m24s) to 365 days."
    )
    only_if_not_rebooked: bool = Field(
        False, description="Skip it if the client has booked again by the time it is due."
    )
    template: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Template name; default: the follow-up template.",
    )


def _one_day_before() -> tuple[Reminder, ...]:
    return (Reminder(offset=timedelta(hours=24)),)


class Notifications(BaseModel):
    """Which notifications the account sends."""

    model_config = MODEL_CONFIG

    confirmation: bool = Field(True, description="After booking.")
    cancellation: bool = Field(True, description="After a cancellation.")
    reschedule: bool = Field(True, description="After a reschedule.")
    subscription_renewal_reminder: bool = Field(True, description="Before a renewal charge.")
    reminders: tuple[Reminder, ...] = Field(
        default_factory=_one_day_before,
        strict=False,
        max_length=MAX_REMINDERS,
        description="Up to 3 e-mail reminders. Absent: one, 24h before; [] : none.",
    )
    sms_reminder: SmsReminder = Field(default_factory=SmsReminder)
    follow_ups: tuple[FollowUp, ...] = Field(
        (), strict=False, max_length=MAX_FOLLOW_UPS, description="Up to 6 follow-up e-mails."
    )

    @model_validator(mode="after")
    def _distinct_offsets(self) -> Notifications:
        offsets = (reminder.offset for reminder in self.reminders)
        errors = repeats("reminders", "offset", offsets, said="same offset as")
        if errors:
            raise invalid("Notifications", errors)
        return self


class Account(BaseModel):
    """One business: an account file, or the data of an account.upsert job."""

    model_config = MODEL_CONFIG

    id: AccountId = Field(description="The file name without .toml.")
    business_name: Name = Field(description="Display name of the mail, exactly as written.")
    owner_email: EmailAddress = Field(description="The owner: receives replies by default.")
    plan: Plan = Field(description="emerging, growing or powerhouse.")
    timezone: LoadableTimeZone = Field(
        description="IANA time zone of the business, e.g. Europe/Paris."
    )
    locale: TemplateLocale = Field(
        description="Language of the messages: fr or en, optionally with a region (fr_CA)."
    )
    country: Annotated[str, AfterValidator(_country)] = Field(
        description="Two-letter country code; the default region of phone numbers."
    )
    verified: bool = Field(False, description="The business's identity has been checked.")
    hipaa: bool = Field(False, description="Health data: texts carry no names nor types.")
    sender_domain: DnsName | None = Field(
        None, description="One of the configured sender domains; default: the default one."
    )
    notifications_enabled: bool = Field(True, description="False: nothing is sent for any type.")
    show_cancel_reschedule_links: bool = Field(True, description="Cancel/Reschedule buttons.")
    attach_ics: bool = Field(True, description="Attach a calendar invitation (.ics).")
    calendars: tuple[Calendar, ...] = Field((), strict=False)
    appointment_types: tuple[AppointmentType, ...] = Field((), strict=False)
    notifications: Notifications = Field(default_factory=Notifications)

    @model_validator(mode="after")
    def _unique_ids(self) -> Account:
        errors: list[tuple[Loc, str]] = []
        groups: dict[str, tuple[Calendar | AppointmentType, ...]] = {
            "calendars": self.calendars,
            "appointment_types": self.appointment_types,
        }
        for field, items in groups.items():
            errors.extend(repeats(field, "id", (item.id for item in items)))
        if errors:
            raise invalid("Account", errors)
        return self

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The business's time zone."""
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def language(self) -> Literal["fr", "en"]:
        """The locale's language, without region."""
        return "fr" if self.locale.startswith("fr") else "en"

    def calendar(self, calendar_id: str) -> Calendar | None:
        """The calendar with that id, if the account lists it."""
        return next((c for c in self.calendars if c.id == calendar_id), None)

    def appointment_type(self, type_id: str) -> AppointmentType | None:
        """The appointment type with that id, if the account lists it."""
        for kind in self.appointment_types:
            if kind.id == type_id:
                return kind
        return None

    def reply_address_for(self, calendar_id: str | None) -> str:
        """Where clients' replies go: the calendar's reply_to if it has one, else the owner."""
        calendar = self.calendar(calendar_id) if calendar_id is not None else None
        if calendar is not None and calendar.reply_to:
            return calendar.reply_to
        return self.owner_email

    def notifies_for_type(self, type_id: str | None) -> bool:
        """False when notifications are off for the account or for that appointment type."""
        kind = self.appointment_type(type_id) if type_id is not None else None
        return self.notifications_enabled and (kind is None or kind.notifications)

    @property
    def sms_reminder_skip_reason(self) -> str | None:
        """Why no SMS reminder is sent, or None when it is."""
        if not self.notifications_enabled:
            return "notifications turned off for the account"
        if not self.notifications.sms_reminder.enabled:
            return "SMS reminder turned off"
        if self.plan not in SMS_PLANS:
            return f"plan {self.plan} does not include SMS reminders"
        return None

    @property
    def sms_reminder_allowed(self) -> bool:
        """The SMS reminder is on, for an account whose plan includes it."""
        return self.sms_reminder_skip_reason is None

    @property
    def effective_sms_text(self) -> str | None:
        """The account's own SMS text, only if it is verified; None means the default text."""
        return self.notifications.sms_reminder.text if self.verified else None

    @property
    def effective_follow_ups(self) -> tuple[FollowUp, ...]:
        """The follow-ups the plan allows (emerging: the first one only)."""
        return self.notifications.follow_ups[: FOLLOW_UPS_BY_PLAN[self.plan]]
