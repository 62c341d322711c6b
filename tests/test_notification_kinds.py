"""The catalogue of notification kinds against PRODUCT.md and the shipped templates."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from gateway.notification_kinds import (
    APPOINTMENT_KINDS,
    CATALOGUE,
    NOTIFICATION_KINDS,
    AppointmentKind,
    PurchaseKind,
)
from outbound.rendering import PARTS

TEMPLATES = Path(__file__).resolve().parent.parent / "outbound/templates"


def test_every_kind_has_rules_and_nothing_else_does() -> None:
    assert set(CATALOGUE) == set(NOTIFICATION_KINDS)
    assert set(get_args(AppointmentKind)) | set(get_args(PurchaseKind)) == set(CATALOGUE)
    assert {k for k, r in CATALOGUE.items() if r.subject == "appointment"} == APPOINTMENT_KINDS


def test_the_product_rules() -> None:
    # PRODUCT.md: a client may leave reminders and follow-ups, and only those.
    optional = {"reminder", "follow_up"}
    assert {k for k, r in CATALOGUE.items() if r.stopped_by_opt_out} == optional
    assert {k for k, r in CATALOGUE.items() if r.list_unsubscribe} == optional
    assert {k for k, r in CATALOGUE.items() if "sms" in r.channels} == {"reminder"}
    methods = {k: r.calendar_method for k, r in CATALOGUE.items() if r.calendar_method}
    assert methods == {
        "confirmation": "REQUEST",
        "reminder": "REQUEST",
        "reschedule": "REQUEST",
        "cancellation": "CANCEL",
    }


def test_every_kind_template_is_shipped_in_every_locale() -> None:
    for locale in ("fr", "en"):
        for rules in CATALOGUE.values():
            for part in PARTS:
                assert (TEMPLATES / locale / f"{rules.template}.{part}").is_file()
