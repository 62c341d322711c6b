"""Human durations ("90s", "15m", "1h30m", "0.5d") as timedelta, and a pydantic type for them."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer
from pydantic_core import PydanticCustomError

_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*([wdhms])")
_WHOLE = re.compile(r"(?:\s*(?:\d+(?:\.\d+)?|\.\d+)\s*[wdhms])+\s*")
_EXAMPLES = '"90s", "15m", "24h", "2d", "1w", "1h30m" or a number of seconds'


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Turn "1h30m", "0.5d", "90" or 90 (seconds) into a timedelta; raise ValueError otherwise."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    # bool is an int subclass, and `verified = true` landing in a duration is a mistake
    elif isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r} (write {_EXAMPLES})")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif _WHOLE.fullmatch(text):
            units = [unit for _, unit in _PART.findall(text)]
            if len(set(units)) != len(units):
                raise ValueError(f"not a duration: {value!r} (each unit may appear once)")
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))
        else:
            raise ValueError(f"not a duration: {value!r} (write {_EXAMPLES})")
    else:
        raise ValueError(f"not a duration: {value!r} (write {_EXAMPLES})")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {value!r}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest human form of a duration, as parse_duration reads it back ("1h30m", "0.25s")."""
    remaining = value.total_seconds()
    if remaining == 0:
        return "0s"
    parts: list[str] = []
    for unit in "dhm":
        count, remaining = divmod(remaining, _UNIT_SECONDS[unit])
        if count:
            parts.append(f"{int(count)}{unit}")
    if remaining:
        parts.append(f"{remaining:g}s")
    return "".join(parts)


def _validate(value: Any) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", "{reason}", {"reason": str(exc)}) from None


Duration = Annotated[
    timedelta,
    BeforeValidator(_validate),
    PlainSerializer(format_duration, return_type=str),
]
"""A duration field: accepts "90s", "15m", "1h30m", "0.5d", "1w" or a number of seconds."""


def between(minimum: timedelta | None = None, maximum: timedelta | None = None) -> AfterValidator:
    """A validator keeping a Duration within inclusive bounds, for Annotated[Duration, ...]."""

    def check(value: timedelta) -> timedelta:
        low = minimum if minimum is not None else timedelta(0)
        if low <= value and (maximum is None or value <= maximum):
            return value
        if maximum is None:
            bounds = f"at least {format_duration(low)}"
        elif minimum is None:
            bounds = f"at most {format_duration(maximum)}"
        else:
            bounds = f"between {format_duration(minimum)} and {format_duration(maximum)}"
        raise PydanticCustomError(
            "duration_range", f"must be {bounds} (got {format_duration(value)})"
        )

    return AfterValidator(check)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise PydanticCustomError("duration_range", "must be longer than 0s")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
"""A Duration that must be longer than zero (timeouts, intervals, lifetimes)."""
