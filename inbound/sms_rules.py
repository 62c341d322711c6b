"""What a client's text to our number means (STOP, START, anything else), and our one answer."""

from __future__ import annotations

import unicodedata
from typing import Final, Literal

# PRODUCT.md: the whole message being one of these words, in any case.
OPT_OUT_WORDS: Final = frozenset(
    {"STOP", "ARRET", "UNSUBSCRIBE", "STOPALL", "END", "QUIT", "CANCEL"}
)
OPT_IN_WORDS: Final = frozenset({"START", "UNSTOP", "YES"})

Meaning = Literal["opt_out", "opt_in", "other"]

_ANSWERS: Final = {
    "fr": "Ce numéro ne lit pas les réponses. Pour toute question, contactez {business}.",
    "en": "This number does not read replies. For any question, please contact {business}.",
}
_ANONYMOUS: Final = {"fr": "l'établissement directement", "en": "the business directly"}


def keyword(text: str) -> str:
    """The message as one word: spaces around and a final full stop or exclamation mark
    dropped, accents removed ("Arrêt" is ARRET), upper case."""
    word = text.strip().rstrip(".!").strip()
    plain = unicodedata.normalize("NFKD", word)
    return "".join(c for c in plain if not unicodedata.combining(c)).upper()


def meaning(text: str) -> Meaning:
    """opt_out for STOP and its synonyms, opt_in for START and its, else other."""
    word = keyword(text)
    if word in OPT_OUT_WORDS:
        return "opt_out"
    if word in OPT_IN_WORDS:
        return "opt_in"
    return "other"


def automatic_answer(locale: str | None, business: str | None) -> str:
    """The answer to any other text: nobody reads this number, whom to contact instead."""
    language = "fr" if (locale or "").lower().startswith("fr") else "en"
    return _ANSWERS[language].format(business=business or _ANONYMOUS[language])
