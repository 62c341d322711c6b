"""What templates see: a job's context checked for its kind and turned into plain values."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo

from babel.dates import format_date as babel_date
from babel.dates import format_time as babel_time
from babel.dates import get_timezone_name
from babel.numbers import format_currency, format_decimal
from babel.units import format_unit
from pydantic import BaseModel, ValidationError

from gateway.account import Account
from gateway.errors import PermanentFailure
from gateway.jobs import Appointment, Client, Order, Subscription
from gateway.notification_kinds import CATALOGUE, CONTEXT_FIELDS

PRODUCTS: Final = ("package", "gift_certificate", "subscription")
CANCELLED_BY: Final = ("client", "owner", "payment_failure")

# CLDR's "atTime" pattern ("mardi 24 novembre 2026 à 14:30"); Babel only has the plain
# "{1}, {0}" one, which reads as a list rather than a sentence.
_AT_TIME: Final = {"fr": "{date} à {time}", "en": "{date} at {time}"}
# CLDR puts a narrow no-break space before AM/PM, which some mail clients and fonts show as a
# box, and which would make an otherwise ASCII subject need encoding.
_NARROW_SPACE: Final = "\u202f"

_M = TypeVar("_M", bound=BaseModel)


def _language(locale: str) -> str:
    return "fr" if locale.lower().startswith("fr") else "en"


def format_date(moment: datetime, zone: tzinfo, locale: str, format: str = "full") -> str:
    """The date of `moment` in `zone`, as `locale` writes it ("mardi 24 novembre 2026")."""
    return babel_date(moment.astimezone(zone), format, locale=locale)


def format_time(moment: datetime, zone: tzinfo, locale: str, format: str = "short") -> str:
    """The time of `moment` in `zone`, as `locale` writes it ("14:30", "2:30 PM")."""
    text = babel_time(moment.astimezone(zone), format, locale=locale)
    return text.replace(_NARROW_SPACE, " ")


def format_datetime(moment: datetime, zone: tzinfo, locale: str) -> str:
    """Date and time as a phrase: "mardi 24 novembre 2026 à 14:30"."""
    return _AT_TIME[_language(locale)].format(
        date=format_date(moment, zone, locale), time=format_time(moment, zone, locale)
    )


def format_amount(amount: str | None, currency: str | None, locale: str) -> str | None:
    """An amount as the locale writes it, with its currency if known ("49,90 €")."""
    if amount is None:
        return None
    if currency is None:
        return format_decimal(Decimal(amount), locale=locale)
    return format_currency(Decimal(amount), currency, locale=locale)


def format_minutes(minutes: int, locale: str) -> str:
    """A duration as the locale abbreviates it: "30 min", "1 h 30 min"."""
    hours, rest = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append(format_unit(hours, "duration-hour", length="short", locale=locale))
    if rest or not hours:
        parts.append(format_unit(rest, "duration-minute", length="short", locale=locale))
    return " ".join(parts)


def type_name(account: Account, type_id: str) -> str:
    """The appointment type's name for clients, or its id if the account does not list it."""
    kind = account.appointment_type(type_id)
    return kind.name if kind is not None else type_id


def build_context(
    kind: str,
    account: Account,
    job_context: Mapping[str, Any],
    recipient: Client | None,
    *,
    unsubscribe_url: str | None,
) -> dict[str, Any]:
    """Check the job's context for `kind`; return plain values for its templates.

    Raises PermanentFailure naming the missing or invalid fields.
    """
    rules = CATALOGUE.get(kind)
    if rules is None:
        raise PermanentFailure(f"unknown notification kind {kind!r}")
    context: dict[str, Any] = {
        "kind": kind,
        "locale": account.locale,
        "timezone": account.timezone,
        "business": {"name": account.business_name},
        "show_links": account.show_cancel_reschedule_links,
        "unsubscribe_url": unsubscribe_url,
        "data": _plain(kind, "", {k: v for k, v in job_context.items() if k not in CONTEXT_FIELDS}),
    }
    client: Client
    if rules.subject == "appointment":
        appointment = context_model(kind, job_context, "appointment", Appointment)
        context["timezone"] = appointment.timezone
        context["appointment"] = _appointment(account, appointment)
        client = appointment.clients[0]
    elif rules.subject == "order":
        order = context_model(kind, job_context, "order", Order)
        product = job_context.get("product")
        if product not in PRODUCTS:
            raise PermanentFailure(
                f"context for order: field 'product' must be one of {', '.join(PRODUCTS)}"
            )
        context["product"] = product
        context["order"] = {
            "id": order.id,
            "name": order.name,
            "amount": format_amount(order.amount, order.currency, account.locale),
            "details": _plain(kind, "order.details", order.details or {}),
        }
        client = order.client
    else:
        subscription = context_model(kind, job_context, "subscription", Subscription)
        by = job_context.get("by")
        if by is not None and by not in CANCELLED_BY:
            raise PermanentFailure(
                f"context for {kind}: field 'by' must be one of {', '.join(CANCELLED_BY)}"
            )
        context["by"] = by
        context["subscription"] = _subscription(account, subscription)
        client = subscription.client
    context["client"] = {"name": (recipient or client).name}
    return context


def _appointment(account: Account, appointment: Appointment) -> dict[str, Any]:
    zone = appointment.zone
    locale = account.locale
    start, end = appointment.start, appointment.end
    calendar = account.calendar(appointment.calendar)
    minutes = round((end - start).total_seconds() / 60)
    previous = appointment.previous_start
    return {
        "id": appointment.id,
        "type": type_name(account, appointment.type),
        "type_id": appointment.type,
        "calendar": calendar.name if calendar is not None else "",
        "calendar_id": appointment.calendar,
        "start": format_datetime(start, zone, locale),
        "end": format_datetime(end, zone, locale),
        "date": format_date(start, zone, locale),
        "time": format_time(start, zone, locale),
        "end_date": format_date(end, zone, locale),
        "end_time": format_time(end, zone, locale),
        "start_iso": start.astimezone(zone).isoformat(),
        "end_iso": end.astimezone(zone).isoformat(),
        "duration": minutes,
        "duration_text": format_minutes(minutes, locale),
        "timezone": appointment.timezone,
        "timezone_name": get_timezone_name(zone, "long", locale=locale),
        # The client chose another zone than the business's: say which one times are in.
        "show_timezone": zone.key != ZoneInfo(account.timezone).key,
        "location": appointment.location,
        "cancel_url": appointment.cancel_url,
        "reschedule_url": appointment.reschedule_url,
        "previous_start": format_datetime(previous, zone, locale) if previous else None,
    }


def _subscription(account: Account, subscription: Subscription) -> dict[str, Any]:
    renews = subscription.renews_at
    zone = account.zone
    return {
        "id": subscription.id,
        "name": subscription.name,
        "amount": format_amount(subscription.amount, subscription.currency, account.locale),
        "renews_date": format_date(renews, zone, account.locale) if renews else None,
        "renews_iso": renews.astimezone(zone).isoformat() if renews else None,
    }


def context_model(kind: str, job_context: Mapping[str, Any], key: str, model: type[_M]) -> _M:
    """The job context's `key` as a `model`, or PermanentFailure naming what is wrong."""
    value = job_context.get(key)
    if isinstance(value, model):
        return value
    if value is None:
        raise PermanentFailure(f"context for {kind}: missing field '{key}'")
    if not isinstance(value, Mapping):
        raise PermanentFailure(f"context for {kind}: field '{key}' must be a JSON object")
    try:
        raw = json.dumps(value, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise PermanentFailure(f"context for {kind}: field '{key}': {exc}") from None
    try:
        # Through JSON, as the job itself was read: strict models take dates as RFC 3339 text.
        return model.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(key, error) for error in exc.errors(include_url=False))
        raise PermanentFailure(f"context for {kind}: {problems}") from None


def _describe(key: str, error: Any) -> str:
    where = ".".join([key, *(str(part) for part in error["loc"])])
    if error["type"] == "missing":
        return f"missing field '{where}'"
    return f"field '{where}': {error['msg'][:1].lower()}{error['msg'][1:]}"


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _plain(kind: str, key: str, value: Mapping[str, Any]) -> dict[str, Any]:
    # Templates get JSON values only (dicts, lists, strings, numbers), never Python objects.
    try:
        plain: dict[str, Any] = json.loads(json.dumps(value, default=_json_default))
    except (TypeError, ValueError) as exc:
        where = f"field '{key}'" if key else "context"
        raise PermanentFailure(f"context for {kind}: {where}: {exc}") from None
    return plain
