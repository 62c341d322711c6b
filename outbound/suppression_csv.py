"""Suppression lists as CSV, to move them between gateways (pure): the columns written by
`mailgw suppression export`, and the rows `mailgw suppression import` accepts."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import timedelta
from typing import Final

from gateway.bounce_classes import BOUNCE_CLASSES, RULES, BounceClass
from gateway.clock import epoch_of, rfc3339
from gateway.settings import SuppressionSettings
from outbound.relay import address_problem
from outbound.suppression import REASONS, Reason, Suppression

COLUMNS: Final = (
    "address", "reason", "class", "account", "detail",
    "first_seen", "last_seen", "count", "expires_at",
)  # fmt: skip
IMPORTED: Final = "imported"


class CsvRefused(Exception):
    """Rows that cannot be imported, each as "SOURCE:LINE: why"."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def to_csv(entries: Iterable[Suppression]) -> str:
    """The entries as CSV, with a header line of COLUMNS."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for e in entries:
        writer.writerow(
            (e.address, e.reason, e.bounce_class or "", e.account or "", e.detail,
             e.first_seen, e.seen_last, e.count, e.expires_at or "")
        )  # fmt: skip
    return out.getvalue()


def from_csv(
    text: str, source: str, now: float, durations: SuppressionSettings
) -> list[Suppression]:
    """The entries of a CSV file with a header line naming its columns (`address` at
    least, any of COLUMNS besides); CsvRefused naming every bad row."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    unknown = [c for c in header if c not in COLUMNS]
    if "address" not in header or unknown:
        what = f"unknown column(s) {', '.join(unknown)}" if unknown else "no address column"
        raise CsvRefused([f"{source}:1: {what} (columns: {', '.join(COLUMNS)})"])
    entries: list[Suppression] = []
    problems: list[str] = []
    for row in reader:
        try:
            entries.append(_entry({k: (v or "").strip() for k, v in row.items()}, now, durations))
        except ValueError as exc:
            problems.append(f"{source}:{reader.line_num}: {exc}")
    if problems:
        raise CsvRefused(problems)
    return entries


def _entry(row: dict[str | None, str], now: float, durations: SuppressionSettings) -> Suppression:
    if None in row:
        raise ValueError("more values than columns")
    address = row["address"]
    problem = address_problem(address) if address else "no address"
    if problem is not None:
        raise ValueError(problem)
    bounce_class = _class(row.get("class", ""))
    reason = _reason(row.get("reason", ""), bounce_class)
    account = row.get("account") or None
    if reason in ("unsubscribe", "complaint") and account is None:
        raise ValueError(f"reason {reason} needs an account")
    first_seen = _time(row, "first_seen") or rfc3339(now)
    last_seen = _time(row, "last_seen")
    count = row.get("count") or "1"
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"count {count!r} is not a whole number above 0")
    expires_at = _time(row, "expires_at")
    lasts = durations.expiry(bounce_class) if bounce_class else None
    if not expires_at and reason == "hard_bounce" and lasts is not None:
        expires_at = rfc3339(epoch_of(last_seen or first_seen) + lasts / timedelta(seconds=1))
    return Suppression(
        # "imported" when the file has no detail column; as written (empty too) when it has.
        address, reason, row.get("detail", IMPORTED), first_seen, account, bounce_class,
        last_seen, int(count), expires_at,
    )  # fmt: skip


def _class(value: str) -> BounceClass | None:
    if not value:
        return None
    if value not in BOUNCE_CLASSES:
        raise ValueError(f"class {value!r} is none of {', '.join(BOUNCE_CLASSES)}")
    return value


def _reason(value: str, bounce_class: BounceClass | None) -> Reason:
    """As written, else a bounce for a class about the address, else an entry by hand."""
    if not value:
        about_the_address = bounce_class is not None and RULES[bounce_class].about_the_address
        return "hard_bounce" if about_the_address else "manual"
    if value not in REASONS:
        raise ValueError(f"reason {value!r} is none of {', '.join(REASONS)}")
    if value == "hard_bounce" and bounce_class and not RULES[bounce_class].about_the_address:
        # Only a refusal about the address suppresses it (PRODUCT.md).
        raise ValueError(f"class {bounce_class} is not about the address: it suppresses nothing")
    return value


def _time(row: dict[str | None, str], column: str) -> str | None:
    value = row.get(column)
    if not value:
        return None
    try:
        return rfc3339(epoch_of(value))
    except ValueError:
        raise ValueError(f"{column} {value!r} is not a date and time (RFC 3339)") from None
