"""The default SMS reminder: its wording, its local time, and its fit in one part."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from babel import Locale
from hypothesis import given
from hypothesis import strategies as st

from outbound.context import format_date
from outbound.sms.segments import Segments, count
from outbound.sms.text import default_text

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
# 14:30 in Paris (UTC+1), 8:30 in New York (UTC-5)
START = datetime(2026, 11, 24, 13, 30, tzinfo=UTC)
APOSTROPHE = "\N{RIGHT SINGLE QUOTATION MARK}"
OPEN = "\N{LEFT-POINTING DOUBLE ANGLE QUOTATION MARK}"
CLOSE = "\N{RIGHT-POINTING DOUBLE ANGLE QUOTATION MARK}"
DASH = "\N{EN DASH}"
ELLIPSIS = "\N{HORIZONTAL ELLIPSIS}"
NBSP = "\N{NO-BREAK SPACE}"
# What the test expects of each: the GSM-7 character that reads the same.
PLAIN = str.maketrans(
    {APOSTROPHE: "'", OPEN: '"', CLOSE: '"', DASH: "-", ELLIPSIS: "...", NBSP: " "}
)


def text(
    business: str = "Acme Studio",
    type_name: str | None = "Haircut",
    calendar: str | None = "Marie",
    *,
    start: datetime = START,
    zone: ZoneInfo = NEW_YORK,
    locale: str = "en_US",
) -> str:
    return default_text(
        business=business,
        type_name=type_name,
        calendar=calendar,
        start=start,
        zone=zone,
        locale=locale,
    )


def test_french() -> None:
    assert (
        text("L'Atelier d'Élodie & Fils", "Coupe femme", zone=PARIS, locale="fr_FR")
        == "Rappel : Coupe femme le mardi 24 novembre 2026 à 14:30 avec Marie, "
        "L'Atelier d'Élodie & Fils."
    )


def test_english() -> None:
    assert (
        text()
        == "Reminder: Haircut on Tuesday, November 24, 2026 at 8:30 AM with Marie, Acme Studio."
    )


def test_any_region_of_the_language() -> None:
    assert text(locale="en_GB", zone=PARIS) == (
        "Reminder: Haircut on Tuesday, 24 November 2026 at 14:30 with Marie, Acme Studio."
    )
    assert text(locale="fr_CA", zone=NEW_YORK, type_name="Coupe").startswith(
        "Rappel : Coupe le mardi 24 novembre 2026 à 08 h 30 avec Marie"
    )


def test_without_type_for_hipaa_accounts() -> None:
    assert text(type_name=None) == (
        "Reminder: your appointment on Tuesday, November 24, 2026 at 8:30 AM with Marie, "
        "Acme Studio."
    )
    assert text(type_name=None, zone=PARIS, locale="fr") == (
        "Rappel : votre rendez-vous le mardi 24 novembre 2026 à 14:30 avec Marie, Acme Studio."
    )


def test_without_calendar() -> None:
    assert text(calendar=None) == (
        "Reminder: Haircut on Tuesday, November 24, 2026 at 8:30 AM, Acme Studio."
    )
    assert text(type_name=None, calendar=None, zone=PARIS, locale="fr") == (
        "Rappel : votre rendez-vous le mardi 24 novembre 2026 à 14:30, Acme Studio."
    )


@pytest.mark.parametrize(
    ("start", "paris", "new_york"),
    [
        # 2026: New York moves to summer time on March 8, Paris on March 29.
        (datetime(2026, 3, 5, 13, 30, tzinfo=UTC), "14:30", "8:30 AM"),
        (datetime(2026, 3, 20, 13, 30, tzinfo=UTC), "14:30", "9:30 AM"),
        (datetime(2026, 3, 30, 13, 30, tzinfo=UTC), "15:30", "9:30 AM"),
        # The day itself changes with the zone.
        (datetime(2026, 3, 30, 2, 30, tzinfo=UTC), "04:30", "10:30 PM"),
    ],
)
def test_the_time_is_the_clients_local_time(start: datetime, paris: str, new_york: str) -> None:
    assert f" à {paris} avec " in text(start=start, zone=PARIS, locale="fr")
    assert f" at {new_york} with " in text(start=start, zone=NEW_YORK)


def test_the_date_in_the_clients_zone() -> None:
    late = datetime(2026, 3, 30, 2, 30, tzinfo=UTC)
    assert "lundi 30 mars 2026 à 04:30" in text(start=late, zone=PARIS, locale="fr")
    assert "Sunday, March 29, 2026 at 10:30 PM" in text(start=late, zone=NEW_YORK)


def test_august_is_written_without_its_circumflex_to_stay_gsm7() -> None:
    august = datetime(2026, 8, 3, 12, tzinfo=UTC)
    message = text(start=august, zone=PARIS, locale="fr")
    assert message == "Rappel : Haircut le lundi 3 aout 2026 à 14:00 avec Marie, Acme Studio."
    assert count(message).encoding == "gsm7"


# "Reminder: Haircut on <date> at 8:30 AM with Marie, <business>." has 46 characters besides
# the business and the date: "Tuesday, November 24, 2026" (26), "Tue, Nov 24, 2026" (17),
# "Tue, Nov 24" (11); one GSM-7 part is 160.
@pytest.mark.parametrize(
    ("length", "date"),
    [
        (88, "Tuesday, November 24, 2026"),
        (89, "Tue, Nov 24, 2026"),
        (97, "Tue, Nov 24, 2026"),
        (98, "Tue, Nov 24"),
        (103, "Tue, Nov 24"),
    ],
)
def test_a_long_business_name_gets_a_shorter_date(length: int, date: str) -> None:
    business = ("Acme Hair & Beauty Studio " * 5)[:length]
    message = text(business)
    assert message == f"Reminder: Haircut on {date} at 8:30 AM with Marie, {business}."
    assert count(message).parts == 1


def test_a_name_too_long_for_one_part_is_kept_whole_with_the_shortest_date() -> None:
    business = "B" * 100
    message = text(business, f"Coupe d{APOSTROPHE}été")
    assert message == f"Reminder: Coupe d'été on Tue, Nov 24 at 8:30 AM with Marie, {business}."
    assert count(message).parts == 2


def test_typographic_punctuation_is_kept_when_it_fits() -> None:
    message = text(f"L{APOSTROPHE}Atelier")
    assert (
        message == f"Reminder: Haircut on Tue, Nov 24 at 8:30 AM with Marie, L{APOSTROPHE}Atelier."
    )
    assert count(message) == Segments("ucs2", len(message), 1)


def test_typographic_punctuation_gives_way_when_only_gsm7_fits() -> None:
    business = f"L{APOSTROPHE}Atelier {OPEN}Studio{CLOSE} {DASH} Downtown{ELLIPSIS}"
    message = text(business)
    assert message == (
        "Reminder: Haircut on Tuesday, November 24, 2026 at 8:30 AM with Marie, "
        'L\'Atelier "Studio" - Downtown....'
    )
    assert count(message).encoding == "gsm7"


@pytest.mark.parametrize(
    ("business", "expected"),
    [
        ("Crêperie", "Rappel : Galette le mar. 24 nov. 2026 à 14:30 avec Anne, Crêperie."),
        ("La Crêperie", "Rappel : Galette le mar. 24 nov. 2026 à 14:30 avec Anne, La Crêperie."),
        ("Crêperie Bleue", "Rappel : Galette le mar. 24 nov. à 14:30 avec Anne, Crêperie Bleue."),
    ],
)
def test_a_letter_outside_gsm7_keeps_the_text_ucs2_in_70(business: str, expected: str) -> None:
    message = text(business, "Galette", "Anne", zone=PARIS, locale="fr")
    assert message == expected
    assert count(message) == Segments("ucs2", len(message), 1)


def test_a_ucs2_text_that_fits_no_part_is_the_most_compact() -> None:
    message = text(f"La Crêperie {DASH} Port", "Galette", "Anne", zone=PARIS, locale="fr")
    assert message == "Rappel : Galette le mar. 24 nov. à 14:30 avec Anne, La Crêperie - Port."
    assert count(message).parts == 2


NAME = st.text(
    alphabet=st.sampled_from(
        [*"aZ09 &'-.,éÉàüêçÇ€{", APOSTROPHE, OPEN, CLOSE, DASH, ELLIPSIS, NBSP]
    ),
    min_size=1,
    max_size=60,
)


@given(
    business=NAME,
    type_name=st.none() | NAME,
    calendar=st.none() | NAME,
    start=st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
    ),
    zone=st.sampled_from([PARIS, NEW_YORK, ZoneInfo("Pacific/Auckland")]),
    locale=st.sampled_from(["fr", "fr_FR", "fr_CA", "en", "en_US", "en_GB"]),
)
def test_every_item_is_there_and_one_part_when_it_can_be(
    business: str,
    type_name: str | None,
    calendar: str | None,
    start: datetime,
    zone: ZoneInfo,
    locale: str,
) -> None:
    message = default_text(
        business=business,
        type_name=type_name,
        calendar=calendar,
        start=start,
        zone=zone,
        locale=locale,
    )
    plain = message.translate(PLAIN)
    for name in (business, type_name, calendar):
        if name is not None:
            assert name in message or name.translate(PLAIN) in plain
    if count(message).parts > 1:
        # Then it is the most compact variant: names in GSM-7 lookalikes, shortest date.
        shortest = Locale.parse(locale).datetime_skeletons["MMMEd"].pattern
        date = format_date(start, zone, locale, shortest).replace("û", "u")
        assert f" {date} " in message
        assert message == plain
