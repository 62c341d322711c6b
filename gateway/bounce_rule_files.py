"""The classification rules read from TOML: the shipped defaults (gateway/bounce_rules.toml)
and the mail administrator's own file, every problem named by file and key."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from typing import Any, Final, cast

import re2

from gateway.bounce_classes import BOUNCE_CLASSES, BounceClass
from gateway.bounce_matching import Rule, StatusPattern, compile_pattern
from gateway.errors import ConfigProblem

SHIPPED: Final = "bounce_rules.toml"
_KEYS: Final = frozenset({"name", "class", "status", "codes", "pattern", "source"})
_CODES: Final = re.compile(r"^([1-5]\d\d)(?:-([1-5]\d\d))?$")


def parse_rules(data: Mapping[str, Any], source: str) -> tuple[list[Rule], list[ConfigProblem]]:
    """The rules of a file's `[[rules]]` tables, in order, and the problems of those refused."""
    problems: list[ConfigProblem] = []
    for key in data:
        if key != "rules":
            problems.append(ConfigProblem(source, key, "unknown key (expected [[rules]] tables)"))
    tables = data.get("rules", [])
    if not isinstance(tables, list):
        return [], [*problems, ConfigProblem(source, "rules", "must be a list of [[rules]] tables")]
    rules: list[Rule] = []
    for index, table in enumerate(tables):
        where = f"rules[{index}]"
        if not isinstance(table, dict):
            problems.append(ConfigProblem(source, where, "must be a table"))
            continue
        found = _problems_of(table, source, where)
        if found:
            problems.extend(found)
        else:
            rules.append(_rule(table, where))
    return rules, problems


def _problems_of(table: Mapping[str, Any], source: str, where: str) -> list[ConfigProblem]:
    problems: list[tuple[str, str]] = [
        (key, "unknown key (expected one of: " + ", ".join(sorted(_KEYS)) + ")")
        for key in table
        if key not in _KEYS
    ]
    for key in ("class", "source"):
        if key not in table:
            problems.append((key, "missing"))
        elif not isinstance(table[key], str) or not table[key].strip():
            problems.append((key, "must be a non-empty string"))
    if isinstance(table.get("class"), str) and table["class"] not in BOUNCE_CLASSES:
        problems.append(
            ("class", f"unknown class {table['class']!r} (one of: {', '.join(BOUNCE_CLASSES)})")
        )
    if "name" in table and not isinstance(table["name"], str):
        problems.append(("name", "must be a string"))
    if not any(key in table for key in ("status", "codes", "pattern")):
        problems.append(("pattern", "missing: a rule matches a status, codes or a pattern"))
    status = table.get("status")
    if status is not None and (not isinstance(status, str) or StatusPattern.parse(status) is None):
        problems.append(("status", 'must be an enhanced status code: "5.1.1", "X.7.1", "5.7.*"'))
    if "codes" in table and _codes(table["codes"]) is None:
        problems.append(("codes", 'must be a reply code (550) or a range ("550-559")'))
    pattern = table.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str) or not pattern:
            problems.append(("pattern", "must be a non-empty string"))
        else:
            try:
                compile_pattern(pattern)
            except re2.error as exc:
                problems.append(("pattern", f"bad regular expression (RE2 syntax): {_why(exc)}"))
    return [ConfigProblem(source, f"{where}.{key}", message) for key, message in problems]


def _why(exc: re2.error) -> str:
    reason = exc.args[0] if exc.args else exc
    return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)


def _codes(value: Any) -> tuple[int, int] | None:
    """(low, high) from 550 or "550-559"; None if it is neither."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value) if 100 <= value <= 599 else None
    found = _CODES.match(value) if isinstance(value, str) else None
    if found is None:
        return None
    low = int(found[1])
    high = int(found[2] or low)
    return (low, high) if low <= high else None


def _rule(table: Mapping[str, Any], where: str) -> Rule:
    status = table.get("status")
    pattern = table.get("pattern")
    return Rule(
        name=table.get("name") or where,
        bounce_class=cast(BounceClass, table["class"]),
        source=table["source"],
        status=StatusPattern.parse(status) if status is not None else None,
        codes=_codes(table["codes"]) if "codes" in table else None,
        pattern=compile_pattern(pattern) if pattern is not None else None,
    )


@cache
def shipped_rules() -> tuple[Rule, ...]:
    """The rules shipped with the gateway, read once."""
    text = files("gateway").joinpath(SHIPPED).read_text(encoding="utf-8")
    rules, problems = parse_rules(tomllib.loads(text), SHIPPED)
    if problems:
        # A packaging fault, found by the tests: never a reason to run without rules.
        raise RuntimeError("; ".join(map(str, problems)))
    return tuple(rules)
