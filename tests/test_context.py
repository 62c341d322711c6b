"""Tests of the template context: checked per kind, plain values, dates in the client's zone."""

from __future__ import annotations

import copy
import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.account import Account
from gateway.errors import PermanentFailure
from gateway.jobs import Appointment, Client
from outbound.context import build_context, format_datetime, format_minutes

ROOT = Path(__file__).resolve().parent.parent
CLIENT = {"name": "Zoé Dupont", "emails": ["zoe@example.com"]}
APPOINTMENT: dict[str, Any] = {
    "id": "123456",
    "calendar": "101",
    "type": "2001",
    "start": "2026-11-24T13:30:00Z",
    "end": "2026-11-24T14:15:00Z",
    "timezone": "Europe/Paris",
    "clients": [CLIENT],
    "location": "12 rue de la Paix, 75002 Paris",
    "cancel_url": "https://app.example.com/cancel?id=123456&t=x",
    "reschedule_url": "https://app.example.com/reschedule?id=123456",
}
SUBSCRIPTION = {
    "id": "s1",
    "name": "Yoga illimité",
    "client": CLIENT,
    "renews_at": "2026-12-01T09:00:00+01:00",
    "amount": "49.90",
    "currency": "EUR",
}
ORDER = {"id": "o1", "name": "Carte cadeau", "client": CLIENT, "amount": "1250", "currency": "EUR"}


def atelier(**changes: Any) -> Account:
    """The French example account of config/accounts, with `changes` applied."""
    data = tomllib.loads((ROOT / "config/accounts/atelier-elodie.toml").read_text())
    return Account(id="atelier-elodie", **{**data, **changes})


def appointment(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(APPOINTMENT), **changes}


def test_product_example_date_in_french() -> None:
    context = build_context(
        "confirmation", atelier(), {"appointment": appointment()}, None, unsubscribe_url=None
    )
    shown = context["appointment"]
    assert shown["start"] == "mardi 24 novembre 2026 à 14:30"
    assert shown["date"] == "mardi 24 novembre 2026"
    assert shown["time"] == "14:30"
    assert shown["end_time"] == "15:15"
    assert shown["duration"] == 45
    assert shown["duration_text"] == "45\xa0min"
    assert shown["type"] == "Coupe femme"
    assert shown["calendar"] == "Élodie"
    assert shown["location"] == "12 rue de la Paix, 75002 Paris"
    assert shown["cancel_url"] == APPOINTMENT["cancel_url"]
    assert shown["show_timezone"] is False
    assert context["business"] == {"name": "L'Atelier d'Élodie & Fils"}
    assert context["client"] == {"name": "Zoé Dupont"}
    assert context["show_links"] is True


def test_english_account_formats_in_english() -> None:
    context = build_context(
        "reminder",
        atelier(locale="en"),
        {"appointment": appointment()},
        None,
        unsubscribe_url="https://u.example.com/1",
    )
    assert context["appointment"]["start"] == "Tuesday, November 24, 2026 at 2:30 PM"
    assert context["unsubscribe_url"] == "https://u.example.com/1"


def test_client_in_another_time_zone_sees_its_own_time() -> None:
    job = {"appointment": appointment(timezone="America/Montreal")}
    shown = build_context("confirmation", atelier(), job, None, unsubscribe_url=None)["appointment"]
    assert shown["start"] == "mardi 24 novembre 2026 à 08:30"
    assert shown["show_timezone"] is True
    assert shown["timezone_name"] == "heure de l\u2019Est nord-américain"
    assert shown["start_iso"] == "2026-11-24T08:30:00-05:00"


def test_unknown_type_and_calendar_fall_back_to_id_and_nothing() -> None:
    job = {"appointment": appointment(type="999", calendar="555")}
    shown = build_context("confirmation", atelier(), job, None, unsubscribe_url=None)["appointment"]
    assert shown["type"] == "999"
    assert shown["calendar"] == ""


def test_model_objects_are_accepted_and_turned_into_plain_values() -> None:
    model = Appointment.model_validate_json(json.dumps(APPOINTMENT))
    recipient = Client(name="Marc Dupont", emails=["marc@example.org"])
    context = build_context(
        "cancellation", atelier(), {"appointment": model}, recipient, unsubscribe_url=None
    )
    assert context["client"] == {"name": "Marc Dupont"}

    def plain(value: Any) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, str | int | float | bool)

    assert plain(context)


def test_links_follow_the_account_setting() -> None:
    context = build_context(
        "confirmation",
        atelier(show_cancel_reschedule_links=False),
        {"appointment": appointment()},
        None,
        unsubscribe_url=None,
    )
    assert context["show_links"] is False


def test_order_amount_in_the_account_locale() -> None:
    job = {"order": ORDER, "product": "gift_certificate"}
    fr = build_context("order", atelier(), job, None, unsubscribe_url=None)
    assert fr["order"]["amount"] == "1\u202f250,00\xa0€"
    assert fr["product"] == "gift_certificate"
    en = build_context("order", atelier(locale="en"), job, None, unsubscribe_url=None)
    assert en["order"]["amount"] == "€1,250.00"


def test_subscription_fields() -> None:
    job = {"subscription": SUBSCRIPTION, "by": "payment_failure"}
    context = build_context("subscription_cancelled", atelier(), job, None, unsubscribe_url=None)
    assert context["subscription"]["amount"] == "49,90\xa0€"
    assert context["subscription"]["renews_date"] == "mardi 1 décembre 2026"
    assert context["by"] == "payment_failure"
    assert context["client"] == {"name": "Zoé Dupont"}


def test_other_keys_reach_templates_as_data() -> None:
    job = {"appointment": appointment(), "note": "Merci !", "extra": {"n": [1, 2]}}
    context = build_context("follow_up", atelier(), job, None, unsubscribe_url=None)
    assert context["data"] == {"note": "Merci !", "extra": {"n": [1, 2]}}


@pytest.mark.parametrize(
    ("kind", "job", "expected"),
    [
        ("confirmation", {}, "context for confirmation: missing field 'appointment'"),
        ("reminder", {"appointment": "x"}, "field 'appointment' must be a JSON object"),
        ("order", {"product": "package"}, "missing field 'order'"),
        ("order", {"order": ORDER}, "field 'product' must be one of package, gift_certificate"),
        ("subscription_paid", {}, "missing field 'subscription'"),
        ("nonsense", {}, "unknown notification kind 'nonsense'"),
    ],
)
def test_missing_or_wrong_context_is_refused(kind: str, job: dict[str, Any], expected: str) -> None:
    with pytest.raises(PermanentFailure) as refused:
        build_context(kind, atelier(), job, None, unsubscribe_url=None)
    assert expected in refused.value.reason


def test_invalid_appointment_names_every_bad_field() -> None:
    bad = appointment(start="tomorrow")
    del bad["clients"]
    with pytest.raises(PermanentFailure) as refused:
        build_context("confirmation", atelier(), {"appointment": bad}, None, unsubscribe_url=None)
    assert "appointment.start" in refused.value.reason
    assert "missing field 'appointment.clients'" in refused.value.reason


def test_format_helpers() -> None:
    moment = datetime(2026, 11, 24, 13, 30, tzinfo=UTC)
    assert (
        format_datetime(moment, ZoneInfo("Europe/Paris"), "fr") == "mardi 24 novembre 2026 à 14:30"
    )
    assert format_datetime(moment, ZoneInfo("Europe/Paris"), "fr_CA") == (
        "mardi 24 novembre 2026 à 14 h 30"
    )
    assert format_minutes(90, "en") == "1 hr 30 min"
    assert format_minutes(60, "fr") == "1\u202fh"
