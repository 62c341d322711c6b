"""Pydantic's validation errors made and read: located problems, in the words of a file's
editor (`FILE_WORDING`) or of a job's developer (`JOB_WORDING`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from gateway.fields import PATTERN_HINTS

Loc = tuple[str | int, ...]


def custom_error(kind: str, message: str) -> PydanticCustomError:
    """An error of that type whose message is `message`, word for word."""
    # user text goes through the context, never the template, so braces in it stay literal
    return PydanticCustomError(kind, "{message}", {"message": message})


def invalid(title: str, errors: Sequence[tuple[Loc, str]]) -> ValidationError:
    """A ValidationError of plain-words messages at given locations, for cross-field checks."""
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(type=custom_error("config", message), loc=loc, input=None)
            for loc, message in errors
        ],
    )


def repeats(
    field: str, key: str, values: Iterable[Hashable], said: str = "duplicate of"
) -> list[tuple[Loc, str]]:
    """A problem at each entry of the list `field` whose `key` an earlier entry has already,
    naming that first entry: `reminders[2].offset: same offset as reminders[0]`."""
    first: dict[Hashable, int] = {}
    problems: list[tuple[Loc, str]] = []
    for index, value in enumerate(values):
        if value in first:
            problems.append(((field, index, key), f"{said} {field}[{first[value]}]"))
        first.setdefault(value, index)
    return problems


def dotted(loc: Loc) -> str:
    """A location as its reader writes it: `relay.smarthost.host`, `clients[0].emails[1]`."""
    text = ""
    for item in loc:
        text += f"[{item}]" if isinstance(item, int) else f".{item}" if text else item
    return text


def describe_value(value: Any) -> str:
    """What a value of the wrong type is, as a TOML file's editor would call it."""
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return f"{names.get(type(value), type(value).__name__)} ({value!r})"


Phrase = Callable[[ErrorDetails], str]


@dataclass(frozen=True)
class Wording:
    """What one kind of reader is told for each type of error, and for any other."""

    phrases: Mapping[str, Phrase]
    otherwise: Phrase

    def problem(self, error: ErrorDetails) -> str:
        """The error's problem in these words, without its location."""
        return self.phrases.get(error["type"], self.otherwise)(error)


def _fixed(text: str) -> Phrase:
    return lambda _error: text


def _not_empty(error: ErrorDetails) -> str:
    return "must not be empty" if error.get("ctx", {}).get("min_length") == 1 else error["msg"]


def _at_most_characters(error: ErrorDetails) -> str:
    return f"must be at most {error.get('ctx', {})['max_length']} characters"


def _own_message(error: ErrorDetails) -> str:
    # our own validators' ValueError is in "error"; a PydanticCustomError's text is the message
    return str(error.get("ctx", {}).get("error", error["msg"]))


def _file_type(expected: str) -> Phrase:
    return lambda error: f"{expected}, not {describe_value(error['input'])}"


def _file_choices(error: ErrorDetails) -> str:
    choices = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
    return "must be one of: " + ", ".join(choices)


def _file_count(bound: str, limit: str, verb: str) -> Phrase:
    def phrase(error: ErrorDetails) -> str:
        ctx = error.get("ctx", {})
        return f"{bound} {ctx[limit]} {verb}, found {ctx['actual_length']}"

    return phrase


def _file_pattern(error: ErrorDetails) -> str:
    pattern = error.get("ctx", {})["pattern"]
    return f"{error['input']!r} does not have the expected form ({pattern})"


_FILE_TYPES = {
    "string_type": "must be a string (text in quotes)",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "tuple_type": "must be a list ([...])",
    "list_type": "must be a list ([...])",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
}

FILE_WORDING = Wording(
    {
        "missing": _fixed("required key is missing"),
        "extra_forbidden": _fixed("unknown key"),
        "literal_error": _file_choices,
        **{kind: _file_type(expected) for kind, expected in _FILE_TYPES.items()},
        "too_long": _file_count("at most", "max_length", "allowed"),
        "too_short": _file_count("at least", "min_length", "required"),
        "string_too_short": _not_empty,
        "string_too_long": _at_most_characters,
        "string_pattern_mismatch": _file_pattern,
        "value_error": _own_message,
    },
    otherwise=lambda error: error["msg"].replace("Input should be", "must be"),
)
"""A configuration file's problems (main or account file), for `FILE:KEY: problem`."""


def _job_pattern(error: ErrorDetails) -> str:
    pattern = error.get("ctx", {})["pattern"]
    return PATTERN_HINTS.get(pattern, f"must match {pattern}")


def _job_value(error: ErrorDetails) -> str:
    # e-mail address checks give their reason in "reason"
    ctx = error.get("ctx", {})
    if "reason" in ctx:
        return f"not a valid e-mail address: {ctx['reason']}"
    return _own_message(error)


_DATE_TIME = "must be an RFC 3339 date-time with offset"
_JOB_TYPES = {
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "list_type": "must be a list",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "too_short": "must not be empty",
    "datetime_type": _DATE_TIME,
    "datetime_parsing": _DATE_TIME,
    "timezone_aware": _DATE_TIME,
}

JOB_WORDING = Wording(
    {
        "json_invalid": lambda error: (
            f"not JSON: {error.get('ctx', {}).get('error', error['msg'])}"
        ),
        **{kind: _fixed(expected) for kind, expected in _JOB_TYPES.items()},
        "string_too_short": _not_empty,
        "string_too_long": _at_most_characters,
        "string_pattern_mismatch": _job_pattern,
        "literal_error": lambda error: f"must be {error.get('ctx', {})['expected']}",
        "value_error": _job_value,
    },
    otherwise=lambda error: error["msg"][:1].lower() + error["msg"][1:],
)
"""A refused job's problems, for the reason it is dead-lettered with."""
