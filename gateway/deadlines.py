"""Delivery deadlines: the latest useful delivery time of each notification (PRODUCT.md
"Delivery deadlines"), and whether a job has outlived its own: pure rules."""

from __future__ import annotations

from datetime import timedelta

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


def _ms(duration: timedelta) -> int:
    return int(duration.total_seconds() * 1000)
