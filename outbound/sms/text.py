"""The default SMS reminder: business, appointment type, date and time, and calendar only."""

from __future__ import annotations

import unicodedata
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Final, NamedTuple

from babel import Locale

from outbound.context import format_date, format_time
from outbound.sms.segments import count, encoding_of

# (sentence, what an appointment without a type is called); HIPAA accounts give no type.
_WORDING: Final = {
    "fr": ("Rappel : {what} le {date} à {time}{calendar}, {business}.", "votre rendez-vous"),
    "en": ("Reminder: {what} on {date} at {time}{calendar}, {business}.", "your appointment"),
}
_WITH: Final = {"fr": " avec {}", "en": " with {}"}
# CLDR skeletons of the shorter dates: "mar. 24 nov. 2026", then "mar. 24 nov."
_SHORTER_DATES: Final = ("yMMMEd", "MMMEd")
# Typographic punctuation and spaces: any one of them makes a whole text UCS-2, which halves
# the room of a part, while their GSM-7 lookalikes read the same on a phone.
_LOOKALIKES: Final = str.maketrans(
    {
        "\N{LEFT SINGLE QUOTATION MARK}": "'",
        "\N{RIGHT SINGLE QUOTATION MARK}": "'",
        "\N{SINGLE LOW-9 QUOTATION MARK}": "'",
        "\N{MODIFIER LETTER APOSTROPHE}": "'",
        "\N{PRIME}": "'",
        "\N{LEFT DOUBLE QUOTATION MARK}": '"',
        "\N{RIGHT DOUBLE QUOTATION MARK}": '"',
        "\N{DOUBLE LOW-9 QUOTATION MARK}": '"',
        "\N{LEFT-POINTING DOUBLE ANGLE QUOTATION MARK}": '"',
        "\N{RIGHT-POINTING DOUBLE ANGLE QUOTATION MARK}": '"',
        "\N{DOUBLE PRIME}": '"',
        "\N{HYPHEN}": "-",
        "\N{NON-BREAKING HYPHEN}": "-",
        "\N{FIGURE DASH}": "-",
        "\N{EN DASH}": "-",
        "\N{EM DASH}": "-",
        "\N{MINUS SIGN}": "-",
        "\N{HORIZONTAL ELLIPSIS}": "...",
        "\N{NO-BREAK SPACE}": " ",
        "\N{NARROW NO-BREAK SPACE}": " ",
        "\N{THIN SPACE}": " ",
        "\N{FIGURE SPACE}": " ",
    }
)


class _Names(NamedTuple):
    business: str
    type_name: str | None
    calendar: str | None

    def plain(self) -> _Names:
        """The names with GSM-7 lookalikes of their typographic punctuation."""
        return _Names(
            self.business.translate(_LOOKALIKES),
            self.type_name and self.type_name.translate(_LOOKALIKES),
            self.calendar and self.calendar.translate(_LOOKALIKES),
        )


def default_text(
    *,
    business: str,
    type_name: str | None,
    calendar: str | None,
    start: datetime,
    zone: tzinfo,
    locale: str,
) -> str:
    """The reminder in the account's language, the time as the client's zone has it.

    The first of its variants, from the most complete to the most compact, that fits one
    part; else the most compact. Every variant names the business, type and calendar whole.
    """
    language = "fr" if locale.lower().startswith("fr") else "en"
    sentence, untyped = _WORDING[language]
    time = _gsm7_babel(format_time(start, zone, locale))
    patterns = ("full", *_shorter_patterns(locale))
    # Formatted on demand: most texts fit one part with the first date form.
    dates: dict[str, str] = {}
    names = _Names(business, type_name, calendar)
    text = ""
    # The names are the owner's, the date's form is ours: change theirs only when no
    # date form fits one part with them.
    for named in dict.fromkeys((names, names.plain())):
        for pattern in patterns:
            if pattern not in dates:
                dates[pattern] = _gsm7_babel(format_date(start, zone, locale, pattern))
            text = sentence.format(
                what=named.type_name or untyped,
                date=dates[pattern],
                time=time,
                calendar=_WITH[language].format(named.calendar) if named.calendar else "",
                business=named.business,
            )
            if count(text).parts == 1:
                return text
    return text


@lru_cache(maxsize=16)
def _shorter_patterns(locale: str) -> tuple[str, ...]:
    skeletons = Locale.parse(locale).datetime_skeletons
    return tuple(skeletons[skeleton].pattern for skeleton in _SHORTER_DATES)


def _gsm7_babel(text: str) -> str:
    # Babel's words are the gateway's own, so letters may lose their accent too ("août" ->
    # "aout", an accepted spelling): û is not GSM-7, and one such letter makes it all UCS-2.
    text = text.translate(_LOOKALIKES)
    if encoding_of(text) == "gsm7":
        return text
    return "".join(map(_unaccented, text))


def _unaccented(char: str) -> str:
    if encoding_of(char) == "gsm7":
        return char
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    return base if base and encoding_of(base) == "gsm7" else char
