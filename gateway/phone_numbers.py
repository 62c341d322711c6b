"""Phone numbers as clients write them, checked and made E.164, or refused with the reason."""

from __future__ import annotations

from functools import lru_cache
from typing import Final

import phonenumbers
from babel import Locale
from phonenumbers import (
    NumberParseException,
    PhoneNumber,
    PhoneNumberFormat,
    PhoneNumberType,
    ValidationResult,
)

from gateway.errors import GatewayError

_PARSE_ERRORS: Final = {
    NumberParseException.INVALID_COUNTRY_CODE: "has no valid country code",
    NumberParseException.NOT_A_NUMBER: "is not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "is too short after its international prefix",
    NumberParseException.TOO_SHORT_NSN: "is too short to be a phone number",
    NumberParseException.TOO_LONG: "is too long to be a phone number",
}
_IMPOSSIBLE: Final = {
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "is a local number: its area code is missing",
    ValidationResult.INVALID_COUNTRY_CODE: "has no valid country code",
    ValidationResult.TOO_SHORT: "is too short for a phone number {where}",
    ValidationResult.INVALID_LENGTH: "has the wrong length for a phone number {where}",
    ValidationResult.TOO_LONG: "is too long for a phone number {where}",
}
# Types where the metadata says texts cannot reach a handset. VoIP ranges (France's 09, the
# UK's 056) are internet-box and softphone lines that mostly take no texts, and personal
# numbers (the UK's 070, Germany's 0700) only forward calls, at a premium to the caller.
# Where the metadata cannot tell a mobile from a landline (the US), the type is
# FIXED_LINE_OR_MOBILE and the number passes: the provider reports it if texts fail.
_NOT_MOBILE: Final = {
    PhoneNumberType.FIXED_LINE: "fixed-line",
    PhoneNumberType.TOLL_FREE: "toll-free",
    PhoneNumberType.PREMIUM_RATE: "premium-rate",
    PhoneNumberType.SHARED_COST: "shared-cost",
    PhoneNumberType.VOIP: "VoIP",
    PhoneNumberType.PERSONAL_NUMBER: "personal (call-forwarding)",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "universal access (company)",
    PhoneNumberType.VOICEMAIL: "voicemail",
}
_ENGLISH: Final = Locale("en")


class NumberRefused(GatewayError):
    """A phone number that texts cannot be sent to; `reason` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# Parsing is the costly part of planning an SMS reminder, and clients book again and again.
@lru_cache(maxsize=65536)
def to_e164(raw: str, region: str) -> str:
    """`raw` as E.164 ("+33612345678"), read with `region` (the account's country) when it
    has no country code; NumberRefused unless it is a valid number that may be a mobile."""
    try:
        number = phonenumbers.parse(raw, region)
    except NumberParseException as exc:
        reason = f"{raw!r} {_PARSE_ERRORS.get(exc.error_type, 'is not a phone number')}"
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE and "+" not in raw:
            reason += f", and the account's country {region!r} is not a known one"
        raise NumberRefused(reason) from None
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible != ValidationResult.IS_POSSIBLE:
        problem = _IMPOSSIBLE[possible].format(where=_where(number))
        raise NumberRefused(f"{raw!r} {problem}")
    if not phonenumbers.is_valid_number(number):
        raise NumberRefused(f"{raw!r} is not a valid phone number {_where(number)}")
    if number.extension:
        raise NumberRefused(f"{raw!r} has an extension, which texts cannot reach")
    kind = _NOT_MOBILE.get(phonenumbers.number_type(number))
    if kind is not None:
        shown = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
        raise NumberRefused(f"{shown!r} is a {kind} number, not a mobile one")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def _where(number: PhoneNumber) -> str:
    code = number.country_code
    region = phonenumbers.region_code_for_country_code(code) if code else None
    country = _ENGLISH.territories.get(region) if region else None
    # "001", the region of non-geographic codes such as +800, is named "world": say nothing
    if country is None or code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        return f"with country code +{code}"
    return f"with country code +{code} ({country})"
