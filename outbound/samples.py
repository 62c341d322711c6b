"""Sample job contexts for `mailgw render`, so an owner can see a notification at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.account import Account

CLIENT = {"name": "Zoé Martin", "emails": ["zoe.martin@example.com"], "phone": "+33612345678"}


def sample_context(kind: str, account: Account, now: datetime | None = None) -> dict[str, Any]:
    """A context of `kind` for `account`: an appointment a week ahead at 14:30 in the
    account's time zone, on its first calendar and appointment type."""
    zone = account.zone
    today = (now or datetime.now(UTC)).astimezone(zone)
    start = (today + timedelta(days=7)).replace(hour=14, minute=30, second=0, microsecond=0)
    calendar = account.calendars[0].id if account.calendars else "calendar"
    kind_id = account.appointment_types[0].id if account.appointment_types else "appointment"
    appointment = {
        "id": "sample-appointment",
        "calendar": calendar,
        "type": kind_id,
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=45)).isoformat(),
        "timezone": account.timezone,
        "clients": [CLIENT],
        "location": "12 rue des Lilas, 69003 Lyon",
        "cancel_url": "https://example.com/appointments/sample/cancel",
        "reschedule_url": "https://example.com/appointments/sample/reschedule",
        "previous_start": (start - timedelta(days=1)).isoformat(),
    }
    subscription = {
        "id": "sample-subscription",
        "name": "Forfait mensuel",
        "client": CLIENT,
        "renews_at": (start + timedelta(days=30)).isoformat(),
        "amount": "49.90",
        "currency": "EUR",
    }
    order = {
        "id": "sample-order",
        "name": "Carte cadeau",
        "client": CLIENT,
        "amount": "80.00",
        "currency": "EUR",
    }
    contexts: dict[str, dict[str, Any]] = {
        "order": {"order": order, "product": "gift_certificate"},
        "subscription_paid": {"subscription": subscription},
        "subscription_renewal_reminder": {"subscription": subscription},
        "subscription_cancelled": {"subscription": subscription, "by": "client"},
    }
    return contexts.get(kind, {"appointment": appointment})
