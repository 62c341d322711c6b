"""Tests of the calendar invitation: every property, parsed back with icalendar."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

import pytest
from icalendar import Calendar

from gateway.jobs import Appointment
from outbound.ics import PRODID, invitation
from tests.test_context import APPOINTMENT, atelier

STAMP = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def parse(
    method: Literal["REQUEST", "CANCEL"], sequence: int, **changes: object
) -> tuple[Any, Any]:
    appointment = Appointment.model_validate_json(json.dumps({**APPOINTMENT, **changes}))
    data = invitation(
        appointment,
        atelier(),
        organizer="scheduling@acuityscheduling.com",
        attendee="zoe@example.com",
        method=method,
        sequence=sequence,
        domain="acuityscheduling.com",
        stamp=STAMP,
    )
    assert all(len(line) <= 75 for line in data.split(b"\r\n"))
    assert data.endswith(b"END:VCALENDAR\r\n")
    calendar = Calendar.from_ical(data)
    (event,) = calendar.walk("VEVENT")
    return calendar, event


def test_request_has_every_property() -> None:
    calendar, event = parse("REQUEST", 0)
    assert str(calendar["VERSION"]) == "2.0"
    assert str(calendar["PRODID"]) == PRODID
    assert str(calendar["METHOD"]) == "REQUEST"
    assert str(event["UID"]) == "123456@acuityscheduling.com"
    assert event["SEQUENCE"] == 0
    assert event["DTSTART"].dt == datetime(2026, 11, 24, 13, 30, tzinfo=UTC)
    assert event["DTEND"].dt == datetime(2026, 11, 24, 14, 15, tzinfo=UTC)
    assert event["DTSTART"].to_ical() == b"20261124T133000Z"
    assert event["DTSTAMP"].dt == STAMP
    assert str(event["SUMMARY"]) == "Coupe femme @ L'Atelier d'Élodie & Fils"
    assert str(event["LOCATION"]) == "12 rue de la Paix, 75002 Paris"
    assert str(event["STATUS"]) == "CONFIRMED"
    organizer = event["ORGANIZER"]
    assert str(organizer) == "mailto:scheduling@acuityscheduling.com"
    assert organizer.params["CN"] == "L'Atelier d'Élodie & Fils"
    attendee = event["ATTENDEE"]
    assert str(attendee) == "mailto:zoe@example.com"
    assert attendee.params["CN"] == "Zoé Dupont"
    assert attendee.params["RSVP"] == "FALSE"


def test_cancel_keeps_the_uid_and_raises_the_sequence() -> None:
    calendar, event = parse("CANCEL", 2)
    assert str(calendar["METHOD"]) == "CANCEL"
    assert str(event["STATUS"]) == "CANCELLED"
    assert str(event["UID"]) == "123456@acuityscheduling.com"
    assert event["SEQUENCE"] == 2


def test_start_with_offset_is_written_in_utc_and_empty_location_left_out() -> None:
    _, event = parse(
        "REQUEST",
        1,
        start="2026-07-01T10:00:00+02:00",
        end="2026-07-01T11:00:00+02:00",
        location="",
    )
    assert event["DTSTART"].to_ical() == b"20260701T080000Z"
    assert "LOCATION" not in event


def test_names_with_ical_specials_survive() -> None:
    name = 'Salon "Chic"; coiffure, & co: \\ fin'
    appointment = Appointment.model_validate_json(json.dumps(APPOINTMENT))
    data = invitation(
        appointment,
        atelier(business_name=name),
        organizer="s@a.com",
        attendee="zoe@example.com",
        method="REQUEST",
        sequence=0,
        domain="a.com",
    )
    (event,) = Calendar.from_ical(data).walk("VEVENT")
    assert event["ORGANIZER"].params["CN"] == name
    assert str(event["SUMMARY"]) == f"Coupe femme @ {name}"


def test_negative_sequence_is_refused() -> None:
    with pytest.raises(ValueError):
        parse("REQUEST", -1)
