"""Human durations: parsing, formatting, and the pydantic Duration type."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from gateway.durations import Duration, PositiveDuration, between, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("24h", timedelta(hours=24)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("0.5d", timedelta(hours=12)),
        ("0.25s", timedelta(milliseconds=250)),
        ("1D2H", timedelta(days=1, hours=2)),
        ("90", timedelta(seconds=90)),
        (90, timedelta(seconds=90)),
        (0.5, timedelta(milliseconds=500)),
        (0, timedelta(0)),
        (timedelta(hours=3), timedelta(hours=3)),
    ],
)
def test_parse(text: str | int | float | timedelta, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "1x", "h", "1h1h", "-5s", "1.h", "5 s m"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_negative_and_bool_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_duration(-1)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(True)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(hours=24), "1d"),
        (timedelta(days=2, hours=1), "2d1h"),
        (timedelta(milliseconds=250), "0.25s"),
    ],
)
def test_format(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@given(st.integers(min_value=0, max_value=10**9))
def test_format_reads_back(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


class Model(BaseModel):
    plain: Duration = timedelta(0)
    positive: PositiveDuration = timedelta(seconds=1)
    bounded: Annotated[Duration, between(timedelta(minutes=15), timedelta(days=14))] = timedelta(
        hours=1
    )


def test_pydantic_type() -> None:
    model = Model.model_validate({"plain": "1h30m", "positive": 5, "bounded": "2d"})
    assert model.plain == timedelta(hours=1, minutes=30)
    assert model.positive == timedelta(seconds=5)
    assert model.model_dump(mode="json") == {"plain": "1h30m", "positive": "5s", "bounded": "2d"}


def test_pydantic_errors_are_plain_words() -> None:
    with pytest.raises(ValidationError) as caught:
        Model.model_validate({"plain": "soon", "positive": "0s", "bounded": "10m"})
    messages = {error["loc"][0]: error["msg"] for error in caught.value.errors()}
    assert messages == {
        "plain": 'not a duration: \'soon\' (write "90s", "15m", "24h", "2d", "1w", '
        '"1h30m" or a number of seconds)',
        "positive": "must be longer than 0s",
        "bounded": "must be between 15m and 14d (got 10m)",
    }
