"""What a client's text means: every STOP and START word, in any case, and nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inbound.sms_rules import OPT_IN_WORDS, OPT_OUT_WORDS, automatic_answer, meaning

STOPS = ["STOP", "ARRET", "UNSUBSCRIBE", "STOPALL", "END", "QUIT", "CANCEL"]
STARTS = ["START", "UNSTOP", "YES"]


def test_the_words_are_product_md_s() -> None:
    assert frozenset(STOPS) == OPT_OUT_WORDS
    assert frozenset(STARTS) == OPT_IN_WORDS


@pytest.mark.parametrize("word", STOPS)
@pytest.mark.parametrize("spelling", [str.upper, str.lower, str.capitalize, str.swapcase])
def test_stop_words_in_any_case(word: str, spelling: object) -> None:
    assert callable(spelling)
    assert meaning(spelling(word)) == "opt_out"
    assert meaning(f"  {spelling(word)} \n") == "opt_out"


@pytest.mark.parametrize("word", STARTS)
def test_start_words(word: str) -> None:
    assert meaning(word.lower()) == "opt_in"
    assert meaning(word.title() + ".") == "opt_in"


@pytest.mark.parametrize("text", ["Arrêt", "arrêt", "ARRÊT!"])
def test_arret_with_its_accent(text: str) -> None:
    assert meaning(text) == "opt_out"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "STOP please",
        "please stop",
        "S T O P",
        "STOPP",
        "Yes I will come",
        "startup",
        "Merci, à demain !",
        "END.END",
    ],
)
def test_anything_else_is_other(text: str) -> None:
    assert meaning(text) == "other"


@given(st.text(max_size=30))
def test_only_the_listed_words_change_anything(text: str) -> None:
    word = text.strip().rstrip(".!").strip().upper()
    if meaning(text) == "opt_out":
        assert word.replace("Ê", "E") in OPT_OUT_WORDS or "ARRE" in word
    elif meaning(text) == "opt_in":
        assert word in OPT_IN_WORDS


def test_the_automatic_answer_speaks_for_the_business() -> None:
    assert automatic_answer("fr_FR", "L'Atelier d'Élodie & Fils") == (
        "Ce numéro ne lit pas les réponses. Pour toute question, contactez"
        " L'Atelier d'Élodie & Fils."
    )
    assert automatic_answer("en", None) == (
        "This number does not read replies. For any question, please contact the business directly."
    )
