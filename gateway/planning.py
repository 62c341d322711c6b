"""When each notification about an appointment goes out, or why it does not: pure rules."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Generic, TypeAlias, TypeVar

from gateway.account import Account
from gateway.durations import format_duration
from gateway.jobs import Appointment
from gateway.notification_kinds import AppointmentKind, Channel

MIN_NOTICE: Final = timedelta(hours=1)
"""An appointment booked less than this before its start gets no reminder."""
STAFF_CHOSE: Final = "staff chose not to notify"


# Not frozen: a frozen dataclass is four times slower to make, and the planner makes
# several per job.
@dataclass(slots=True)
class Planned:
    """A notification to send at `at` (UTC; equal to now when it goes out at once)."""

    kind: AppointmentKind
    channel: Channel
    index: int
    at: datetime
    only_if_not_rebooked: bool = False


@dataclass(slots=True)
class Skipped:
    """A notification that will not be sent, and why (recorded in the appointment's history)."""

    kind: AppointmentKind
    channel: Channel
    index: int
    reason: str


Plan: TypeAlias = list[Planned | Skipped]
"""Every notification an event concerns, each once, in a stable order."""


def plan_booking(account: Account, appointment: Appointment, now: datetime) -> Plan:
    """appointment.booked: the confirmation now, the reminders before, the follow-ups after."""
    now = _utc(now)
    plan = [_immediate("confirmation", account.notifications.confirmation, now)]
    return _gated(account, appointment, plan + _reminders_and_follow_ups(account, appointment, now))


def plan_reschedule(account: Account, appointment: Appointment, now: datetime) -> Plan:
    """appointment.rescheduled: the reschedule notice now, and everything else for the new start.

    No confirmation: the reschedule notice takes its place. Nothing refers to the
    old start; the caller drops what was pending for it. Moved without notifying,
    nothing at all is planned, reminders included (PRODUCT: "nothing is sent").
    """
    now = _utc(now)
    plan = [_immediate("reschedule", account.notifications.reschedule, now)]
    return _gated(account, appointment, plan + _reminders_and_follow_ups(account, appointment, now))


def plan_cancellation(account: Account, appointment: Appointment, now: datetime) -> Plan:
    """appointment.cancelled: the cancellation notice now; the caller drops what was pending."""
    plan = [_immediate("cancellation", account.notifications.cancellation, _utc(now))]
    return _gated(account, appointment, plan)


def plan_resend(account: Account, appointment: Appointment, now: datetime) -> Plan:
    """appointment.confirmation.resend: the confirmation now.

    Made even when the appointment is past: someone asked for it explicitly. Its
    deadline (gateway/deadlines.py) still applies when it is sent: past the start, it
    goes only with `deadlines.after_start`. The account's settings and `notify` apply,
    as for any confirmation.
    """
    plan = [_immediate("confirmation", account.notifications.confirmation, _utc(now))]
    return _gated(account, appointment, plan)


def reminder_at(start: datetime, offset: timedelta, now: datetime) -> datetime | str:
    """When a reminder `offset` (> 0) before `start` goes out, planned at `now`; else why not.

    The result is in UTC. Arithmetic is on instants, so the offset is real elapsed
    time, even across a daylight-saving change. "Booked" means `now`, not the
    appointment's `booked_at`: what matters to the client is how long before the
    start the reminder arrives, even when the job was handled late.
    """
    return _reminder_at(_utc(start), offset, _utc(now))


def _reminder_at(start: datetime, offset: timedelta, now: datetime) -> datetime | str:
    """reminder_at for `start` and `now` already in UTC: converting them is most of its cost,
    and a plan has several reminders for one start."""
    left = start - now
    if left < MIN_NOTICE:
        return "booked less than 1 hour before the start"
    due = start - offset
    if due >= now:
        return due
    # Late booking: sent at once if at least two thirds of the offset remain. Compared
    # in whole microseconds (3 * left >= 2 * offset) so that the boundary is exact.
    if 3 * left >= 2 * offset:
        return now
    return (
        f"booked too late for the {format_duration(offset)} reminder: "
        f"{format_duration(_minutes(left))} before the start, "
        f"under two thirds of {format_duration(offset)}"
    )


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is UTC:
        return moment
    # A naive time would silently be read as the server's local time.
    if moment.utcoffset() is None:
        raise ValueError(f"a time zone is required: {moment.isoformat()}")
    return moment.astimezone(UTC)


def _minutes(duration: timedelta) -> timedelta:
    # Shown in reasons: seconds and microseconds of a booking time are noise there.
    return duration // timedelta(minutes=1) * timedelta(minutes=1)


def _immediate(kind: AppointmentKind, enabled: bool, now: datetime) -> Planned | Skipped:
    if enabled:
        return Planned(kind, "email", 0, now)
    return Skipped(kind, "email", 0, f"{kind} e-mails turned off")


def _reminders_and_follow_ups(account: Account, appointment: Appointment, now: datetime) -> Plan:
    start = _utc(appointment.start)
    return [
        *_email_reminders(account, start, now),
        _sms_reminder(account, appointment, start, now),
        *_follow_ups(account, start, now),
    ]


def _email_reminders(account: Account, start: datetime, now: datetime) -> Plan:
    reminders = account.notifications.reminders
    if not reminders:
        return [Skipped("reminder", "email", 0, "e-mail reminders turned off")]
    times = [_reminder_at(start, reminder.offset, now) for reminder in reminders]
    # Late reminders all fall due now, and a client wants one, not several at once.
    # The one with the smallest offset is kept: its time is the nearest to now. No
    # other time is shared: the offsets are distinct.
    kept = None
    if now in times:
        due_now = [index for index, at in enumerate(times) if at == now]
        kept = min(due_now, key=lambda index: reminders[index].offset)
    plan: Plan = []
    for index, at in enumerate(times):
        if isinstance(at, str):
            plan.append(Skipped("reminder", "email", index, at))
        elif kept is not None and index != kept and at == now:
            other = format_duration(reminders[kept].offset)
            plan.append(
                Skipped("reminder", "email", index, f"the {other} reminder goes out at that time")
            )
        else:
            plan.append(Planned("reminder", "email", index, at))
    return plan


def _sms_reminder(
    account: Account, appointment: Appointment, start: datetime, now: datetime
) -> Planned | Skipped:
    # One per appointment, whatever the number of clients: the sender texts each
    # client who has a phone number.
    reason = account.sms_reminder_skip_reason
    if reason is not None:
        return Skipped("reminder", "sms", 0, reason)
    for client in appointment.clients:
        if client.phone:
            break
    else:
        return Skipped("reminder", "sms", 0, "no client has a phone number")
    at = _reminder_at(start, account.notifications.sms_reminder.offset, now)
    if isinstance(at, str):
        return Skipped("reminder", "sms", 0, at)
    return Planned("reminder", "sms", 0, at)


def _follow_ups(account: Account, start: datetime, now: datetime) -> Plan:
    configured = account.notifications.follow_ups
    if not configured:
        # Listed all the same, so that the history accounts for every kind.
        return [Skipped("follow_up", "email", 0, "no follow-up set up")]
    allowed = len(account.effective_follow_ups)
    plan: Plan = []
    for index, follow_up in enumerate(configured):
        at = start + follow_up.delay
        if index >= allowed:
            reason = f"plan {account.plan} allows {allowed} follow-up(s)"
            plan.append(Skipped("follow_up", "email", index, reason))
        elif at < now:
            # Skipped rather than sent late: an appointment entered after the fact, or
            # moved into the past, would otherwise get a stale message, or a second
            # one when the follow-up for the old time was already sent.
            delay = format_duration(follow_up.delay)
            reason = f"its time ({delay} after the start) had passed when it was planned"
            plan.append(Skipped("follow_up", "email", index, reason))
        else:
            # Its template is found when it is sent, by its index (see outbound.builder).
            plan.append(Planned("follow_up", "email", index, at, follow_up.only_if_not_rebooked))
    return plan


def _gated(account: Account, appointment: Appointment, plan: Plan) -> Plan:
    # Turned off for the account or the type: that explains every entry, whatever
    # other reason it had. Staff's choice not to notify applies to what would have
    # been sent; what would not have been keeps its own reason.
    reason = _off_reason(account, appointment.type)
    if reason is not None:
        return [Skipped(item.kind, item.channel, item.index, reason) for item in plan]
    if not appointment.notify:
        return [
            Skipped(item.kind, item.channel, item.index, STAFF_CHOSE)
            if isinstance(item, Planned)
            else item
            for item in plan
        ]
    return plan


def _off_reason(account: Account, type_id: str) -> str | None:
    if not account.notifications_enabled:
        return "notifications turned off for the account"
    kind = account.appointment_type(type_id)
    if kind is not None and not kind.notifications:
        return f'notifications turned off for the appointment type "{kind.name}"'
    return None


PlanFunction: TypeAlias = Callable[[Account, Appointment, datetime], Plan]
PLANS: Final[dict[str, PlanFunction]] = {
    "appointment.booked": plan_booking,
    "appointment.rescheduled": plan_reschedule,
    "appointment.cancelled": plan_cancellation,
    "appointment.confirmation.resend": plan_resend,
}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


# A planned notification as the planner keeps it: (kind, channel, index, only if not
# rebooked, time), the time in whole microseconds after the appointment's start (negative
# before it), or None when it goes out at once.
Timed: TypeAlias = tuple[AppointmentKind, Channel, int, bool, int | None]


Timetable: TypeAlias = Sequence[Timed | Skipped]
Layout = TypeVar("Layout")


class Timetables(Generic[Layout]):
    """The plans of appointment jobs as timetables (see Timed), computed once per account,
    job kind and what the rules read of an appointment for those that start far enough
    ahead, and kept as their user lays them out (`lay_out`, made once with them).

    Starting more than every reminder's offset (and the minimum notice) after now, an
    appointment's plan is the same whatever its start: each reminder at its offset before
    it, each follow-up at its delay after it, the immediate notice at once. So the rules
    run once for such appointments, and their plan is kept relative to the start; nearer
    ones run the rules each time. Accounts are immutable: a changed one is a new object,
    with timetables of its own."""

    def __init__(self, lay_out: Callable[[Timetable], Layout], size: int = 4096) -> None:
        self.lay_out = lay_out
        self.size = size
        self._far_ahead: dict[tuple[int, str, str, bool, bool], tuple[Account, int, Layout]] = {}

    def of(
        self, kind: str, account: Account, appointment: Appointment, now: datetime
    ) -> tuple[int, Layout]:
        """The appointment's start in microseconds since the epoch, and what the planning
        rules of job `kind` give it at `now`, laid out."""
        start = _micros(appointment.start - _EPOCH)
        # What the rules read of an appointment besides its start.
        phone = any(client.phone for client in appointment.clients)
        key = (id(account), kind, appointment.type, appointment.notify, phone)
        known = self._far_ahead.get(key)
        if known is None:
            horizon = _micros(_horizon(account))
            # Any time more than the horizon before the start plans the same.
            before = appointment.start - timedelta(microseconds=horizon + 1)
            far_ahead = _timed(PLANS[kind](account, appointment, before), start, before)
            if len(self._far_ahead) >= self.size:
                self._far_ahead.clear()
            # Kept with the account, so that its id is no other's while they are kept.
            known = self._far_ahead[key] = (account, horizon, self.lay_out(far_ahead))
        if start - _micros(now - _EPOCH) > known[1]:
            return start, known[2]
        return start, self.lay_out(_timed(PLANS[kind](account, appointment, now), start, now))


def _horizon(account: Account) -> timedelta:
    """How far ahead a start must be for the plan not to depend on how far it is."""
    notifications = account.notifications
    offsets = [reminder.offset for reminder in notifications.reminders]
    return max(MIN_NOTICE, notifications.sms_reminder.offset, *offsets)


def _timed(plan: Plan, start: int, now: datetime) -> Timetable:
    return tuple(
        (
            item.kind,
            item.channel,
            item.index,
            item.only_if_not_rebooked,
            None if item.at <= now else _micros(item.at - _EPOCH) - start,
        )
        if isinstance(item, Planned)
        else item
        for item in plan
    )


def _micros(duration: timedelta) -> int:
    # Exact, where total_seconds() goes through a float.
    return (duration.days * 86_400 + duration.seconds) * 1_000_000 + duration.microseconds
