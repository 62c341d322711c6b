"""The rules of single fields that account files and jobs share: ids, time zones, locales,
e-mail addresses, and the sentence that says what a pattern expects."""

from __future__ import annotations

import re
import zoneinfo
from functools import cache, lru_cache
from typing import Annotated, Final

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

_EMAIL_CACHE_SIZE = 100_000

ACCOUNT_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
# Each pattern doubles as the key of the sentence an upstream developer reads when it
# does not match, so a refusal says what is expected rather than quoting a regex.
_UPSTREAM_ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
_URL_PATTERN = r"^(?i:https?)://[^\x00-\x20\x7f/?#]+(?:[/?#][^\x00-\x20\x7f]*)?$"
_AMOUNT_PATTERN = r"^[0-9]{1,15}(?:\.[0-9]{1,6})?$"
_CURRENCY_PATTERN = r"^[A-Z]{3}$"
_LOCALE_TAG_PATTERN = r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$"
PATTERN_HINTS: Final = {
    _UPSTREAM_ID_PATTERN: "must not contain control characters",
    ACCOUNT_ID_PATTERN: (
        "must be an account id: a letter or digit, then up to 127 letters, digits, '.', '_' or '-'"
    ),
    _URL_PATTERN: "must be an http or https URL",
    _AMOUNT_PATTERN: 'must be a decimal amount written as a string, such as "49.90"',
    _CURRENCY_PATTERN: 'must be an ISO 4217 currency code, such as "EUR"',
    _LOCALE_TAG_PATTERN: 'must be a locale, such as "fr" or "en-CA"',
}
"""What each pattern expects, in the words a job's developer reads."""

AccountId = Annotated[str, Field(pattern=ACCOUNT_ID_PATTERN)]
"""An account's id: its file's name without .toml, and the `account` of its jobs."""


def _number_as_text(value: object) -> object:
    # The scheduling service's ids are often numbers in its own JSON; they are
    # identifiers all the same, kept as text.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


_NUMBER_AS_TEXT = BeforeValidator(_number_as_text)
AccountItemId = Annotated[str, _NUMBER_AS_TEXT, Field(min_length=1, max_length=128)]
"""A calendar's or appointment type's id in an account, as the scheduling service gives it."""
UpstreamId = Annotated[
    str, Field(min_length=1, max_length=200, pattern=_UPSTREAM_ID_PATTERN), _NUMBER_AS_TEXT
]
"""An id the upstream application gives in a job (job, appointment, calendar, order...)."""

Url = Annotated[str, Field(max_length=2048, pattern=_URL_PATTERN)]
Amount = Annotated[str, Field(pattern=_AMOUNT_PATTERN)]
Currency = Annotated[str, Field(pattern=_CURRENCY_PATTERN)]


def _loadable_time_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r}: use an IANA name such as Europe/Paris"
        ) from None
    return value


LoadableTimeZone = Annotated[str, AfterValidator(_loadable_time_zone)]
"""An account's time zone: any zone this machine's time zone database loads."""


@cache
def _listed_time_zones() -> frozenset[str]:
    # "localtime" is the server's own zone and "Factory" a placeholder: neither is a client's.
    return frozenset(zoneinfo.available_timezones() - {"localtime", "Factory"})


def _listed_time_zone(name: str) -> str:
    # A set lookup, not ZoneInfo(name): any string is safe to test, and no file is opened.
    if name not in _listed_time_zones():
        raise ValueError('must be an IANA time zone name, such as "Europe/Paris"')
    return name


ListedTimeZone = Annotated[str, AfterValidator(_listed_time_zone)]
"""A client's time zone in a job: a name of the IANA list, never the server's own zone."""


def _template_locale(value: str) -> str:
    match = re.fullmatch(r"(fr|en)(?:[_-]([A-Za-z]{2}))?", value)
    if match is None:
        raise ValueError(
            f"unsupported locale {value!r}: use fr or en, optionally with a region (fr_CA)"
        )
    language, region = match.groups()
    return f"{language}_{region.upper()}" if region else language


TemplateLocale = Annotated[str, AfterValidator(_template_locale)]
"""An account's locale: a language the shipped templates are written in (fr, en), with an
optional region, written fr_CA."""
LocaleTag = Annotated[str, Field(pattern=_LOCALE_TAG_PATTERN)]
"""A job's locale: any language tag ("fr", "en-CA"), kept as given."""


# Checking an address is most of the cost of a job, and the same clients' addresses come
# back job after job. (A refusal raises, so it is never cached and always explained.)
@lru_cache(maxsize=_EMAIL_CACHE_SIZE)
def _email_address(value: str) -> str:
    # Imported here: pydantic.networks is slow to import, and reading the configuration
    # (`mailgw queue`) checks no address.
    from pydantic.networks import validate_email

    return validate_email(value)[1]


def _bare_email_address(value: str) -> str:
    if "<" in value:
        # The recipient's name comes from the client record, never from the address.
        raise PydanticCustomError("email_name", "must be a bare e-mail address, without a name")
    return _email_address(value)


EmailAddress = Annotated[str, AfterValidator(_email_address)]
"""An e-mail address; written with a name ("Jo <jo@example.com>"), the address alone is kept."""
BareEmailAddress = Annotated[str, AfterValidator(_bare_email_address)]
"""An e-mail address written alone, without a name (a job's recipients)."""


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


NotBlank = AfterValidator(_not_blank)
"""Refuses text that is empty or only white space."""
