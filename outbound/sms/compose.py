"""The text of an `sms.send` job: the default reminder text, or the account's own where allowed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError, UndefinedError

from gateway.account import Account
from gateway.errors import GatewayError
from gateway.jobs import Appointment, SmsJob
from gateway.notification_kinds import CATALOGUE
from outbound.context import context_model, format_date, format_time, type_name
from outbound.owner_templates import OwnerTemplates
from outbound.sms.segments import MAX_CHARACTERS
from outbound.sms.text import default_text


class TextRefused(GatewayError):
    """A job whose text cannot be sent at all (never retried)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class ComposedText:
    """The text to send, and why the account's own text was not used, if it was not."""

    text: str
    note: str | None = None


def text_variables(account: Account, appointment: Appointment) -> dict[str, Any]:
    """What an account's own text may name. HIPAA accounts' texts name neither the
    client nor the appointment type (PRODUCT.md), so those variables do not exist."""
    zone, locale = appointment.zone, account.locale
    calendar = account.calendar(appointment.calendar)
    variables: dict[str, Any] = {
        "business": account.business_name,
        "date": format_date(appointment.start, zone, locale),
        "time": format_time(appointment.start, zone, locale),
        "calendar": calendar.name if calendar is not None else "",
    }
    if not account.hipaa:
        variables["type"] = type_name(account, appointment.type)
        variables["client"] = appointment.clients[0].name
        variables["location"] = appointment.location
    return variables


async def compose_text(job: SmsJob, account: Account, templates: OwnerTemplates) -> ComposedText:
    """The text for `job`; TextRefused when there is none to send. The account's own text is
    written by its owner: it runs in the render pool (TemplateOverLimit past a limit)."""
    if job.template is None:
        assert job.text is not None
        if not account.verified:
            raise TextRefused("only verified accounts may send their own text")
        return ComposedText(job.text)
    if "sms" not in CATALOGUE[job.template].channels:
        raise TextRefused(f"there is no text message for '{job.template}' notifications")
    appointment = context_model("reminder", job.context, "appointment", Appointment)
    calendar = account.calendar(appointment.calendar)
    default = default_text(
        business=account.business_name,
        type_name=None if account.hipaa else type_name(account, appointment.type),
        calendar=calendar.name if calendar is not None else None,
        start=appointment.start,
        zone=appointment.zone,
        locale=account.locale,
    )
    own = account.notifications.sms_reminder.text
    if own is None:
        return ComposedText(default)
    if not account.verified:
        return ComposedText(default, "the account's own text is used once the account is verified")
    try:
        text = (
            await templates.render_text(account.id, own, text_variables(account, appointment))
        ).strip()
    except UndefinedError as exc:
        hipaa = " (HIPAA accounts' texts name neither client nor type)" if account.hipaa else ""
        return ComposedText(default, f"the account's own text was not used: {exc.message}{hipaa}")
    except TemplateError as exc:
        return ComposedText(default, f"the account's own text was not used: {exc.message}")
    if not text:
        return ComposedText(default, "the account's own text renders empty")
    if len(text) > MAX_CHARACTERS:
        return ComposedText(
            default, f"the account's own text renders {len(text)} characters (most: 1600)"
        )
    return ComposedText(text)
