"""The Account model alone: names kept as written, defaults, and the plan-dependent helpers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.account import Account

BASE: dict[str, Any] = {
    "id": "salon",
    "business_name": "Salon",
    "owner_email": "owner@salon.example.com",
    "plan": "growing",
    "timezone": "Europe/Paris",
    "locale": "fr",
    "country": "FR",
}


def account(**changes: Any) -> Account:
    return Account.model_validate({**BASE, **changes})


@pytest.mark.parametrize(
    "name",
    [
        "L'Atelier d'Élodie & Fils",
        'Chez "Zoé" & Cie',
        "Ça coûte <moins> cher; vraiment?",
        "Salon «\xa0Les Fils\xa0» \u2013 coiffure d\u2019art",
        "日本の美容室",
    ],
)
def test_business_name_kept_exactly(name: str) -> None:
    assert account(business_name=name).business_name == name


ONE_LINE = ["A\rB", "A\nB", "A\0B", "A\u2028B", "A\x1bB", "Müller\tGmbH", "A\x85B", "A\x7fB"]


@pytest.mark.parametrize("name", ONE_LINE)
def test_business_name_single_line(name: str) -> None:
    with pytest.raises(ValidationError, match="must be on one line"):
        account(business_name=name)


@pytest.mark.parametrize("name", ONE_LINE)
def test_calendar_and_type_names_single_line(name: str) -> None:
    """They reach subjects through the templates (appointment.type, appointment.calendar)."""
    with pytest.raises(ValidationError, match=r"calendars\.0\.name\n.*must be on one line"):
        account(calendars=[{"id": "1", "name": name}])
    with pytest.raises(ValidationError, match=r"appointment_types\.0\.name\n.*must be on one"):
        account(appointment_types=[{"id": "1", "name": name}])


def test_defaults() -> None:
    a = account()
    assert [r.offset for r in a.notifications.reminders] == [timedelta(hours=24)]
    assert account(notifications={"reminders": []}).notifications.reminders == ()
    assert a.notifications.sms_reminder.offset == timedelta(hours=24)
    assert not a.notifications.sms_reminder.enabled
    assert (a.verified, a.hipaa, a.sender_domain) == (False, False, None)
    assert a.notifications_enabled and a.show_cancel_reschedule_links and a.attach_ics
    assert a.notifications.follow_ups == ()
    assert str(a.zone) == "Europe/Paris"


def test_reply_address() -> None:
    a = account(
        calendars=[
            {"id": "1", "name": "Élodie", "reply_to": "elodie@salon.example.com"},
            {"id": 2, "name": "Salle 2"},
        ]
    )
    assert a.reply_address_for("1") == "elodie@salon.example.com"
    assert a.reply_address_for("2") == "owner@salon.example.com"
    assert a.reply_address_for("unknown") == "owner@salon.example.com"
    assert a.reply_address_for(None) == "owner@salon.example.com"
    assert a.calendar("2") is not None
    assert a.calendar("3") is None


def test_notifications_per_type() -> None:
    types = [{"id": "a", "name": "A"}, {"id": "b", "name": "B", "notifications": False}]
    a = account(appointment_types=types)
    assert a.notifies_for_type("a")
    assert not a.notifies_for_type("b")
    assert a.notifies_for_type(None)
    assert a.appointment_type("b") is not None
    assert not account(appointment_types=types, notifications_enabled=False).notifies_for_type("a")


def test_plan_gates_are_kept_not_refused() -> None:
    notifications = {
        "sms_reminder": {"enabled": True, "text": "Rappel"},
        "follow_ups": [{"delay": "1d"}, {"delay": "7d"}],
    }
    emerging = account(plan="emerging", notifications=notifications)
    assert not emerging.sms_reminder_allowed
    assert emerging.sms_reminder_skip_reason == "plan emerging does not include SMS reminders"
    assert [f.delay for f in emerging.effective_follow_ups] == [timedelta(days=1)]
    assert emerging.effective_sms_text is None

    growing = account(plan="growing", verified=True, notifications=notifications)
    assert growing.sms_reminder_allowed
    assert growing.effective_sms_text == "Rappel"
    assert len(growing.effective_follow_ups) == 2
    assert account().sms_reminder_skip_reason == "SMS reminder turned off"
    silent = account(notifications_enabled=False, notifications=notifications)
    assert silent.sms_reminder_skip_reason == "notifications turned off for the account"


def test_account_id_pattern() -> None:
    with pytest.raises(ValidationError):
        account(id="../etc")
    assert account(id="a" * 128).id == "a" * 128
    with pytest.raises(ValidationError):
        account(id="a" * 129)


def test_frozen() -> None:
    with pytest.raises(ValidationError):
        account().plan = "powerhouse"


def test_a_repeated_reminder_offset_names_the_first() -> None:
    reminders = [{"offset": "24h"}, {"offset": "2h"}, {"offset": "1d"}]
    with pytest.raises(ValidationError) as refused:
        account(notifications={"reminders": reminders})
    [error] = refused.value.errors()
    assert error["loc"] == ("notifications", "reminders", 2, "offset")
    assert error["msg"] == "same offset as reminders[0]"
