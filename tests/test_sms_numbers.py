"""Phone numbers: E.164 with the account's country as default region, or a clear refusal."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.phone_numbers import NumberRefused, to_e164


@pytest.mark.parametrize(
    "raw",
    [
        "06 12 34 56 78",
        "0612345678",
        "06.12.34.56.78",
        "06-12-34-56-78",
        "(06) 12 34 56 78",
        "+33 6 12 34 56 78",
        "+33 (0)6 12 34 56 78",
        "+33612345678",
        "0033612345678",
        " 06 12 34 56 78 ",
    ],
)
def test_a_french_mobile_in_every_spelling(raw: str) -> None:
    assert to_e164(raw, "FR") == "+33612345678"


def test_an_international_number_ignores_the_region() -> None:
    assert to_e164("+33 6 12 34 56 78", "US") == "+33612345678"
    assert to_e164("+44 7400 123456", "FR") == "+447400123456"


def test_a_us_number_passes_where_mobiles_and_landlines_look_alike() -> None:
    assert to_e164("(212) 555-0123", "US") == "+12125550123"
    assert to_e164("+1 650 253 0000", "FR") == "+16502530000"


def refused(raw: str, region: str = "FR") -> str:
    with pytest.raises(NumberRefused) as info:
        to_e164(raw, region)
    assert str(info.value) == info.value.reason
    assert isinstance(info.value, GatewayError)
    return info.value.reason


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("01 23 45 67 89", "'+33 1 23 45 67 89' is a fixed-line"),
        ("0800 123 456", "'+33 800 12 34 56' is a toll-free"),
        ("+1 800 555 0123", "'+1 800-555-0123' is a toll-free"),
        ("0899 123 456", "'+33 899 12 34 56' is a premium-rate"),
        ("0810 123 456", "'+33 810 12 34 56' is a shared-cost"),
        ("09 12 34 56 78", "'+33 9 12 34 56 78' is a VoIP"),
        ("+44 70 1234 5678", "'+44 70 1234 5678' is a personal (call-forwarding)"),
    ],
)
def test_numbers_that_are_not_mobiles_are_refused(raw: str, kind: str) -> None:
    assert refused(raw) == f"{kind} number, not a mobile one"


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("abc", "FR", "'abc' is not a phone number"),
        ("", "FR", "'' is not a phone number"),
        ("06", "FR", "'06' is too short for a phone number with country code +33 (France)"),
        ("+33 6", "FR", "'+33 6' is too short to be a phone number"),
        (
            "06 12 34 56 78 9",
            "FR",
            "'06 12 34 56 78 9' is too long for a phone number with country code +33 (France)",
        ),
        (
            "0612345678901234567890",
            "FR",
            "'0612345678901234567890' is too long to be a phone number",
        ),
        ("+999 612345678", "FR", "'+999 612345678' has no valid country code"),
        (
            "06 12 34 56 78",
            "XX",
            "'06 12 34 56 78' has no valid country code, and the account's country 'XX' "
            "is not a known one",
        ),
        ("00", "FR", "'00' is too short after its international prefix"),
        (
            "+33 0 12 34 56 78",
            "FR",
            "'+33 0 12 34 56 78' is not a valid phone number with country code +33 (France)",
        ),
        (
            "+1 999 555 0123",
            "FR",
            "'+1 999 555 0123' is not a valid phone number with country code +1 (United States)",
        ),
        ("+800 12", "FR", "'+800 12' is too short for a phone number with country code +800"),
        ("253 0000", "US", "'253 0000' is a local number: its area code is missing"),
        (
            "06 12 34 56 78 ext 12",
            "FR",
            "'06 12 34 56 78 ext 12' has an extension, which texts cannot reach",
        ),
    ],
)
def test_refusals_say_why(raw: str, region: str, reason: str) -> None:
    assert refused(raw, region) == reason
