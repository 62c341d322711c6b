"""Delivery deadlines: the latest useful delivery time of each notification (PRODUCT.md
"Delivery deadlines"), and whether a job has outlived its own: pure rules."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

from gateway.clock import rfc3339
from gateway.jobs import EmailJob, SmsJob
from gateway.settings import DeadlinesSettings

# The notices about an appointment that serve nothing once it has started (all but the
# follow-ups).
BEFORE_START = frozenset({"reminder", "confirmation", "reschedule", "cancellation"})


def waiting_late_ms(kind: str, after_start_us: int, settings: DeadlinesSettings) -> int | None:
    """How long after it falls due (`after_start_us` microseconds after the appointment's
    start, negative before it) a waiting notification of an appointment may still go out,
    in milliseconds, or None when it has no deadline: a follow-up, its grace; a notice,
    until the start."""
    if kind == "follow_up":
        return _ms(settings.follow_up_grace)
    return None if settings.after_start else max(0, -after_start_us // 1000)


def at_once_expires_ms(
    kind: str, start_ms: int, now_ms: int, settings: DeadlinesSettings
) -> int | None:
    """The deadline of an appointment's notification made at once, at `now_ms`."""
    if kind == "follow_up":
        return now_ms + _ms(settings.follow_up_grace)
    return None if settings.after_start else start_ms


def purchase_expires_ms(happened_ms: int, settings: DeadlinesSettings) -> int:
    """The deadline of an order or subscription notice: the grace after the purchase or
    charge."""
    return happened_ms + _ms(settings.purchase_grace)


def expired_reason(job: EmailJob | SmsJob, now: float) -> str | None:
    """Why the job is no longer sent (its deadline, `expires_at`, has passed), or None."""
    if job.expires_at is None or now <= job.expires_at.timestamp():
        return None
    ended = rfc3339(job.expires_at.timestamp())
    if _until_start(job):
        return f"not sent: the appointment started at {ended}"
    return f"not sent: its deadline, {ended}, had passed"


def too_late_to_retry(job: EmailJob | SmsJob) -> str:
    """Why a job whose next attempt would come after its deadline is not tried again."""
    assert job.expires_at is not None
    ends = rfc3339(job.expires_at.timestamp())
    what = f"the appointment's start, {ends}" if _until_start(job) else f"its deadline, {ends}"
    return f"not sent: the next attempt would come after {what}"


def _until_start(job: EmailJob | SmsJob) -> bool:
    return job.template in BEFORE_START and job.appointment is not None


def seconds_left(job: EmailJob | SmsJob, now: float) -> float | None:
    """How long the job may still go out, or None when it has no deadline."""
    return None if job.expires_at is None else job.expires_at.timestamp() - now


# A job's `expires_at` as its JSON text writes it (see deadline_in).
_EXPIRES_AT = re.compile(r'"expires_at"\s*:\s*"([^"]*)"')


def deadline_in(job_text: str) -> float:
    """The deadline a job's JSON text gives (epoch seconds), math.inf for none or one it
    cannot read: a search, not a parse, since it only orders jobs (as gateway/lua/
    deadline.lua does); whether one is expired is decided on the parsed job."""
    found = _EXPIRES_AT.search(job_text)
    if found is None:
        return math.inf
    try:
        moment = datetime.fromisoformat(found.group(1))
    except ValueError:
        return math.inf
    return moment.timestamp() if moment.tzinfo is not None else math.inf


def _ms(duration: timedelta) -> int:
    return int(duration.total_seconds() * 1000)
