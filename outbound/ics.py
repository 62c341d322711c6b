"""The calendar invitation (.ics, RFC 5545 / iTIP) sent with appointment notifications."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from icalendar import Calendar, Event, vCalAddress, vText

from gateway.account import Account
from gateway.jobs import Appointment
from gateway.notification_kinds import CalendarMethod
from outbound.context import type_name

PRODID: Final = "-//mailgw//appointment notifications//EN"


def invitation(
    appointment: Appointment,
    account: Account,
    *,
    organizer: str,
    attendee: str,
    method: CalendarMethod,
    sequence: int,
    domain: str,
    stamp: datetime | None = None,
) -> bytes:
    """The iCalendar object inviting `attendee` to the appointment, or cancelling it.

    The UID is the same for every message about one appointment, so that calendars update
    the event in place; `sequence` must grow with each change for them to accept it.
    """
    if sequence < 0:
        raise ValueError("sequence must be >= 0")
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method)

    event = Event()
    event.add("uid", f"{appointment.id}@{domain}")
    event.add("sequence", sequence)
    event.add("dtstamp", (stamp or datetime.now(UTC)).astimezone(UTC))
    event.add("dtstart", appointment.start.astimezone(UTC))
    event.add("dtend", appointment.end.astimezone(UTC))
    event.add("summary", f"{type_name(account, appointment.type)} @ {account.business_name}")
    if appointment.location:
        event.add("location", appointment.location)
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    event.add("transp", "OPAQUE")

    host = vCalAddress(f"mailto:{organizer}")
    host.params["cn"] = vText(account.business_name)
    event.add("organizer", host)

    guest = vCalAddress(f"mailto:{attendee}")
    name = next((c.name for c in appointment.clients if attendee in c.emails), None)
    if name:
        guest.params["cn"] = vText(name)
    guest.params["role"] = "REQ-PARTICIPANT"
    guest.params["partstat"] = "ACCEPTED"
    # The booking is already made: no reply is expected, and none should reach the business.
    guest.params["rsvp"] = "FALSE"
    event.add("attendee", guest)

    calendar.add_component(event)
    data: bytes = calendar.to_ical()
    return data
