"""The planner's timing rules (gateway.planning), with a fixed clock: examples and properties."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.account import Account
from gateway.jobs import Appointment, Client
from gateway.notification_kinds import AppointmentKind
from gateway.planning import (
    PLANS,
    Plan,
    PlanFunction,
    Planned,
    Skipped,
    Timetable,
    Timetables,
    plan_booking,
    plan_cancellation,
    plan_reschedule,
    plan_resend,
    reminder_at,
)

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")
H = timedelta(hours=1)
M = timedelta(minutes=1)
US = timedelta(microseconds=1)

ALL_EVENTS: list[PlanFunction] = [plan_booking, plan_reschedule, plan_cancellation, plan_resend]

ACCOUNT: dict[str, Any] = {
    "id": "salon",
    "business_name": "Salon",
    "owner_email": "owner@salon.example.com",
    "plan": "growing",
    "timezone": "Europe/Paris",
    "locale": "fr",
    "country": "FR",
    "appointment_types": [
        {"id": "cut", "name": "Coupe femme"},
        {"id": "quiet", "name": "Consultation", "notifications": False},
    ],
}
SMS_ON = {"sms_reminder": {"enabled": True}}
REASON_TYPE_OFF = 'notifications turned off for the appointment type "Consultation"'


def account(notifications: dict[str, Any] | None = None, **changes: Any) -> Account:
    data = {**ACCOUNT, **changes}
    if notifications is not None:
        data["notifications"] = notifications
    return Account.model_validate(data)


def appointment(
    start: datetime, *, phone: str | None = "+33612345678", **changes: Any
) -> Appointment:
    data: dict[str, Any] = {
        "id": "a1",
        "calendar": "c1",
        "type": "cut",
        "start": start.isoformat(),
        "end": (start + H).isoformat(),
        "timezone": "Europe/Paris",
        "clients": [{"name": "Zoé", "emails": ["zoe@example.com"], "phone": phone}],
        **changes,
    }
    return Appointment.model_validate_json(json.dumps(data))


def entry(plan: Plan, kind: str, channel: str = "email", index: int = 0) -> Planned | Skipped:
    [found] = [
        item for item in plan if (item.kind, item.channel, item.index) == (kind, channel, index)
    ]
    return found


def at(plan: Plan, kind: str, channel: str = "email", index: int = 0) -> datetime:
    found = entry(plan, kind, channel, index)
    assert isinstance(found, Planned), found
    return found.at


def reason(plan: Plan, kind: str, channel: str = "email", index: int = 0) -> str:
    found = entry(plan, kind, channel, index)
    assert isinstance(found, Skipped), found
    return found.reason


# --- the defaults and the immediate notices ---


def test_booking_with_the_default_settings() -> None:
    start = NOW + timedelta(days=3)
    plan = plan_booking(account(), appointment(start), NOW)
    assert plan == [
        Planned("confirmation", "email", 0, NOW),
        Planned("reminder", "email", 0, start - 24 * H),
        Skipped("reminder", "sms", 0, "SMS reminder turned off"),
        Skipped("follow_up", "email", 0, "no follow-up set up"),
    ]


def test_times_are_utc_whatever_zone_now_and_start_are_given_in() -> None:
    start = datetime(2026, 11, 25, 14, 30, tzinfo=ZoneInfo("America/New_York"))
    now = NOW.astimezone(ZoneInfo("Asia/Tokyo"))
    plan = plan_booking(account(SMS_ON), appointment(start), now)
    planned = [item for item in plan if isinstance(item, Planned)]
    assert len(planned) == 3
    assert all(item.at.tzinfo is UTC for item in planned)
    assert at(plan, "confirmation") == NOW
    assert at(plan, "reminder") == datetime(2026, 11, 24, 19, 30, tzinfo=UTC)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="a time zone is required"):
        plan_booking(account(), appointment(NOW + 48 * H), NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="a time zone is required"):
        reminder_at(datetime(2026, 12, 1, 10, 0), H, NOW)


def test_cancellation_is_the_notice_alone_sent_now() -> None:
    plan = plan_cancellation(account(SMS_ON), appointment(NOW + 48 * H), NOW)
    assert plan == [Planned("cancellation", "email", 0, NOW)]


def test_resend_is_the_confirmation_now_even_for_a_past_appointment() -> None:
    for start in (NOW + 48 * H, NOW - 48 * H):
        assert plan_resend(account(), appointment(start), NOW) == [
            Planned("confirmation", "email", 0, NOW)
        ]


def test_a_past_appointment_booked_after_the_fact_is_confirmed_but_not_reminded() -> None:
    plan = plan_booking(account(SMS_ON), appointment(NOW - 2 * H), NOW)
    assert at(plan, "confirmation") == NOW
    assert reason(plan, "reminder") == "booked less than 1 hour before the start"
    assert reason(plan, "reminder", "sms") == "booked less than 1 hour before the start"


def test_reschedule_replans_everything_for_the_new_start_without_confirmation() -> None:
    notifications = {
        **SMS_ON,
        "reminders": [{"offset": "24h"}, {"offset": "2h"}],
        "follow_ups": [{"delay": "1d"}],
    }
    new_start = NOW + timedelta(days=5)
    moved = appointment(new_start, previous_start=(NOW + 30 * H).isoformat())
    plan = plan_reschedule(account(notifications), moved, NOW)
    assert plan == [
        Planned("reschedule", "email", 0, NOW),
        Planned("reminder", "email", 0, new_start - 24 * H),
        Planned("reminder", "email", 1, new_start - 2 * H),
        Planned("reminder", "sms", 0, new_start - 24 * H),
        Planned("follow_up", "email", 0, new_start + 24 * H),
    ]


def test_a_reschedule_to_a_close_time_follows_the_late_booking_rule() -> None:
    # moved to 10 h from now: the 24 h reminder is too late, the 12 h one goes now
    notifications = {"reminders": [{"offset": "24h"}, {"offset": "12h"}]}
    plan = plan_reschedule(account(notifications), appointment(NOW + 10 * H), NOW)
    assert reason(plan, "reminder", index=0).startswith("booked too late for the 1d reminder")
    assert at(plan, "reminder", index=1) == NOW


# --- turned off ---


@pytest.mark.parametrize(
    ("kind", "event"),
    [
        ("confirmation", plan_booking),
        ("confirmation", plan_resend),
        ("cancellation", plan_cancellation),
        ("reschedule", plan_reschedule),
    ],
)
def test_an_immediate_notice_turned_off_is_skipped(
    kind: AppointmentKind, event: PlanFunction
) -> None:
    plan = event(account({kind: False}), appointment(NOW + 48 * H), NOW)
    assert plan[0] == Skipped(kind, "email", 0, f"{kind} e-mails turned off")
    assert all(item.kind != kind or isinstance(item, Skipped) for item in plan)


def test_email_reminders_turned_off() -> None:
    plan = plan_booking(account({"reminders": []}), appointment(NOW + 48 * H), NOW)
    assert [item for item in plan if item.kind == "reminder" and item.channel == "email"] == [
        Skipped("reminder", "email", 0, "e-mail reminders turned off")
    ]


@pytest.mark.parametrize("event", ALL_EVENTS)
def test_notifications_off_for_the_account_skip_everything(event: PlanFunction) -> None:
    notifications = {**SMS_ON, "follow_ups": [{"delay": "1d"}, {"delay": "2d"}]}
    off = account(notifications, notifications_enabled=False)
    plan = event(off, appointment(NOW + 48 * H), NOW)
    on = event(account(notifications), appointment(NOW + 48 * H), NOW)
    assert plan == [
        Skipped(item.kind, item.channel, item.index, "notifications turned off for the account")
        for item in on
    ]


@pytest.mark.parametrize("event", ALL_EVENTS)
def test_notifications_off_for_the_type_skip_everything(event: PlanFunction) -> None:
    plan = event(account(SMS_ON), appointment(NOW + 48 * H, type="quiet"), NOW)
    assert plan
    assert all(
        item == Skipped(item.kind, item.channel, item.index, REASON_TYPE_OFF) for item in plan
    )


def test_a_type_the_account_does_not_list_is_notified() -> None:
    plan = plan_booking(account(), appointment(NOW + 48 * H, type="unknown"), NOW)
    assert at(plan, "confirmation") == NOW


# --- staff chose not to notify ---


@pytest.mark.parametrize("event", ALL_EVENTS)
def test_without_notifying_nothing_is_planned(event: PlanFunction) -> None:
    notifications = {**SMS_ON, "follow_ups": [{"delay": "1d"}]}
    start = NOW + 48 * H
    silent = event(account(notifications), appointment(start, notify=False), NOW)
    loud = event(account(notifications), appointment(start), NOW)
    assert silent == [
        Skipped(item.kind, item.channel, item.index, "staff chose not to notify") for item in loud
    ]


def test_without_notifying_other_skips_keep_their_reason() -> None:
    start = NOW + 30 * M
    plan = plan_booking(account(), appointment(start, notify=False), NOW)
    assert reason(plan, "confirmation") == "staff chose not to notify"
    assert reason(plan, "reminder") == "booked less than 1 hour before the start"
    assert reason(plan, "reminder", "sms") == "SMS reminder turned off"


# --- e-mail reminders ---


def test_each_reminder_at_its_offset_before_the_start() -> None:
    notifications = {"reminders": [{"offset": "2d"}, {"offset": "1h"}, {"offset": "1h30m"}]}
    start = NOW + timedelta(days=7)
    plan = plan_booking(account(notifications), appointment(start), NOW)
    assert [at(plan, "reminder", index=i) for i in range(3)] == [
        start - 48 * H,
        start - H,
        start - 90 * M,
    ]


@pytest.mark.parametrize(
    ("left", "expected"),
    [
        (16 * H, NOW),
        (
            15 * H,
            "booked too late for the 1d reminder: 15h before the start, under two thirds of 1d",
        ),
    ],
)
def test_product_example_24h_reminder_booked_16h_or_15h_before(
    left: timedelta, expected: datetime | str
) -> None:
    assert reminder_at(NOW + left, 24 * H, NOW) == expected
    plan = plan_booking(account(), appointment(NOW + left), NOW)
    if isinstance(expected, str):
        assert reason(plan, "reminder") == expected
    else:
        assert at(plan, "reminder") == expected


@pytest.mark.parametrize(
    ("offset", "left", "sent"),
    [
        (24 * H, 16 * H, True),  # exactly two thirds
        (24 * H, 16 * H - US, False),
        (3 * H, 2 * H, True),
        (3 * H, 2 * H - US, False),
        (90 * M, H, True),  # two thirds and the 1 h minimum at once
        (2 * H, 80 * M, True),
        (2 * H, 80 * M - US, False),
        (timedelta(hours=5, seconds=1), timedelta(hours=3, seconds=1) - US, False),
    ],
)
def test_late_booking_boundary_at_two_thirds(
    offset: timedelta, left: timedelta, sent: bool
) -> None:
    result = reminder_at(NOW + left, offset, NOW)
    assert (result == NOW) if sent else isinstance(result, str)


def test_the_late_reason_shows_minutes_not_microseconds() -> None:
    assert reminder_at(NOW + 16 * H - US, 24 * H, NOW) == (
        "booked too late for the 1d reminder: 15h59m before the start, under two thirds of 1d"
    )


def test_booked_exactly_at_the_reminder_time_is_the_normal_case() -> None:
    assert reminder_at(NOW + 24 * H, 24 * H, NOW) == NOW
    assert reminder_at(NOW + 24 * H + US, 24 * H, NOW) == NOW + US


def test_exactly_1_hour_ahead_gets_its_reminders_less_gets_none() -> None:
    notifications = {
        "reminders": [{"offset": "1h"}],
        "sms_reminder": {"enabled": True, "offset": "15m"},
    }
    plan = plan_booking(account(notifications), appointment(NOW + H), NOW)
    assert at(plan, "reminder") == NOW
    assert at(plan, "reminder", "sms") == NOW + 45 * M
    plan = plan_booking(account(notifications), appointment(NOW + H - US), NOW)
    assert reason(plan, "reminder") == "booked less than 1 hour before the start"
    # the SMS reminder's own time (15 min before) is still ahead, but the rule is per booking
    assert reason(plan, "reminder", "sms") == "booked less than 1 hour before the start"


def test_late_reminders_due_together_send_only_the_smallest_offset() -> None:
    # booked 20 h ahead: the 24 h and 21 h reminders would both go out now
    notifications = {"reminders": [{"offset": "24h"}, {"offset": "2h"}, {"offset": "21h"}]}
    start = NOW + 20 * H
    plan = plan_booking(account(notifications), appointment(start), NOW)
    assert reason(plan, "reminder", index=0) == "the 21h reminder goes out at that time"
    assert at(plan, "reminder", index=1) == start - 2 * H
    assert at(plan, "reminder", index=2) == NOW


def test_a_reminder_due_now_and_a_late_one_are_one_reminder() -> None:
    notifications = {"reminders": [{"offset": "20h"}, {"offset": "24h"}]}
    plan = plan_booking(account(notifications), appointment(NOW + 20 * H), NOW)
    assert at(plan, "reminder", index=0) == NOW
    assert reason(plan, "reminder", index=1) == "the 20h reminder goes out at that time"


# --- the SMS reminder ---


@pytest.mark.parametrize(
    ("plan_name", "sms", "why"),
    [
        ("growing", {}, "SMS reminder turned off"),
        ("emerging", {"enabled": True}, "plan emerging does not include SMS reminders"),
        ("powerhouse", {"enabled": False}, "SMS reminder turned off"),
    ],
)
def test_sms_reminder_skipped_with_the_account_reason(
    plan_name: str, sms: dict[str, Any], why: str
) -> None:
    acct = account({"sms_reminder": sms}, plan=plan_name)
    plan = plan_booking(acct, appointment(NOW + 48 * H), NOW)
    assert reason(plan, "reminder", "sms") == why


@pytest.mark.parametrize("plan_name", ["growing", "powerhouse"])
def test_one_sms_reminder_at_its_own_offset(plan_name: str) -> None:
    acct = account({"sms_reminder": {"enabled": True, "offset": "3h"}}, plan=plan_name)
    start = NOW + 48 * H
    two_clients = [
        {"name": "Zoé", "emails": ["zoe@example.com"], "phone": "+33612345678"},
        {"name": "Léa", "emails": ["lea@example.com"], "phone": "+33698765432"},
    ]
    plan = plan_booking(acct, appointment(start, clients=two_clients), NOW)
    assert [item for item in plan if item.channel == "sms"] == [
        Planned("reminder", "sms", 0, start - 3 * H)
    ]


def test_no_sms_reminder_when_no_client_has_a_phone() -> None:
    plan = plan_booking(account(SMS_ON), appointment(NOW + 48 * H, phone=None), NOW)
    assert reason(plan, "reminder", "sms") == "no client has a phone number"


@pytest.mark.parametrize(
    ("left", "sent"),
    [(4 * H, True), (80 * M, True), (80 * M - US, False), (10 * H, True)],
)
def test_sms_late_booking_rule_with_its_own_offset(left: timedelta, sent: bool) -> None:
    # offset 2 h: two thirds is 80 min (the e-mail reminder's 1 d offset plays no part)
    acct = account({"sms_reminder": {"enabled": True, "offset": "2h"}})
    plan = plan_booking(acct, appointment(NOW + left), NOW)
    if not sent:
        assert reason(plan, "reminder", "sms").startswith("booked too late for the 2h reminder")
    else:
        assert at(plan, "reminder", "sms") == max(NOW, NOW + left - 2 * H)


def test_sms_and_email_reminders_may_go_out_together() -> None:
    plan = plan_booking(account(SMS_ON), appointment(NOW + 48 * H), NOW)
    assert at(plan, "reminder", "sms") == at(plan, "reminder") == NOW + 24 * H


# --- follow-ups ---


def test_follow_ups_after_the_start_with_their_options() -> None:
    notifications = {
        "follow_ups": [
            {"delay": "0.01d"},
            {"delay": "2d", "only_if_not_rebooked": True, "template": "review"},
            {"delay": "365d"},
        ]
    }
    start = NOW + 48 * H
    plan = plan_booking(account(notifications), appointment(start), NOW)
    assert [item for item in plan if item.kind == "follow_up"] == [
        Planned("follow_up", "email", 0, start + timedelta(minutes=14, seconds=24)),
        Planned("follow_up", "email", 1, start + 48 * H, True),
        Planned("follow_up", "email", 2, start + timedelta(days=365)),
    ]


def test_emerging_allows_the_first_follow_up_only() -> None:
    notifications = {"follow_ups": [{"delay": f"{days}d"} for days in range(1, 7)]}
    plan = plan_booking(account(notifications, plan="emerging"), appointment(NOW + 48 * H), NOW)
    assert at(plan, "follow_up") == NOW + 72 * H
    for index in range(1, 6):
        assert reason(plan, "follow_up", index=index) == "plan emerging allows 1 follow-up(s)"


def test_six_follow_ups_on_growing() -> None:
    notifications = {"follow_ups": [{"delay": f"{days}d"} for days in range(1, 7)]}
    plan = plan_booking(account(notifications), appointment(NOW + 48 * H), NOW)
    assert [at(plan, "follow_up", index=i) for i in range(6)] == [
        NOW + 48 * H + timedelta(days=d) for d in range(1, 7)
    ]


def test_a_follow_up_whose_time_has_passed_is_skipped_one_due_now_is_sent() -> None:
    notifications = {"follow_ups": [{"delay": "1h"}, {"delay": "2h"}, {"delay": "3h"}]}
    plan = plan_booking(account(notifications), appointment(NOW - 2 * H), NOW)
    assert reason(plan, "follow_up", index=0) == (
        "its time (1h after the start) had passed when it was planned"
    )
    assert at(plan, "follow_up", index=1) == NOW
    assert at(plan, "follow_up", index=2) == NOW + H


def test_follow_ups_do_not_need_an_hour_of_notice() -> None:
    notifications = {"follow_ups": [{"delay": "1d"}]}
    plan = plan_booking(account(notifications), appointment(NOW + 10 * M), NOW)
    assert at(plan, "follow_up") == NOW + 10 * M + 24 * H


# --- daylight saving: offsets and delays are real elapsed time ---

# Europe/Paris: back from CEST (+02:00) to CET (+01:00) on Sunday 2026-10-25 at 03:00,
# forward from CET to CEST on Sunday 2027-03-28 at 02:00.
DST_WEEKS = [datetime(2026, 10, day, 10, 0, tzinfo=PARIS) for day in range(22, 29)] + [
    datetime(2027, 3, day, 10, 0, tzinfo=PARIS) for day in range(25, 32)
]


@pytest.mark.parametrize("start", DST_WEEKS, ids=lambda d: d.strftime("%Y-%m-%d"))
def test_24h_reminder_is_24_real_hours_before_across_dst(start: datetime) -> None:
    now = start - timedelta(days=10)
    acct = account({**SMS_ON, "follow_ups": [{"delay": "1d"}]})
    plan = plan_booking(acct, appointment(start), now)
    real_start = start.astimezone(UTC)
    assert at(plan, "reminder") == real_start - 24 * H
    assert at(plan, "reminder", "sms") == real_start - 24 * H
    assert at(plan, "follow_up") == real_start + 24 * H
    # given a start in the zone itself, the result is still 24 real hours before
    assert reminder_at(start, 24 * H, now) == real_start - 24 * H


def test_across_dst_the_local_clock_moves_by_23_or_25_hours() -> None:
    autumn = datetime(2026, 10, 25, 10, 0, tzinfo=PARIS)  # 09:00 UTC, CET
    spring = datetime(2027, 3, 28, 10, 0, tzinfo=PARIS)  # 08:00 UTC, CEST
    now = datetime(2026, 10, 1, tzinfo=UTC)
    autumn_at = reminder_at(autumn, 24 * H, now)
    assert autumn_at == datetime(2026, 10, 24, 9, 0, tzinfo=UTC)
    assert isinstance(autumn_at, datetime)
    assert autumn_at.astimezone(PARIS).hour == 11  # Saturday 11:00 CEST, 25 h on the wall
    spring_at = reminder_at(spring, 24 * H, now)
    assert spring_at == datetime(2027, 3, 27, 8, 0, tzinfo=UTC)
    assert isinstance(spring_at, datetime)
    assert spring_at.astimezone(PARIS).hour == 9  # Saturday 09:00 CET, 23 h on the wall


def test_late_booking_across_dst_counts_real_hours() -> None:
    # From 00:00 to 10:00 on 2026-10-25 the Paris clock moves 10 h but 11 real hours pass:
    # 11 h >= two thirds of 16 h (10h40m), so a 16 h reminder still goes; 16h31m's is too late
    start = datetime(2026, 10, 25, 10, 0, tzinfo=PARIS)
    now = datetime(2026, 10, 25, 0, 0, tzinfo=PARIS)
    assert start.astimezone(UTC) - now.astimezone(UTC) == 11 * H
    assert reminder_at(start, 16 * H, now) == now.astimezone(UTC)
    assert isinstance(reminder_at(start, 16 * H + 31 * M, now), str)


# --- properties ---

offsets = st.integers(min_value=3600, max_value=30 * 86400).map(lambda s: timedelta(seconds=s))
sms_offsets = st.integers(min_value=900, max_value=14 * 86400).map(lambda s: timedelta(seconds=s))
delays = st.integers(min_value=864, max_value=365 * 86400).map(lambda s: timedelta(seconds=s))
# Starts from the past to 40 days ahead, with fine steps near now where the rules bend.
lefts = st.one_of(
    st.integers(min_value=-3 * 86400, max_value=40 * 86400),
    st.integers(min_value=-2 * 3600, max_value=30 * 3600),
).map(lambda s: timedelta(seconds=s))


@st.composite
def accounts(draw: st.DrawFn) -> Account:
    reminders = draw(st.lists(offsets, max_size=3, unique=True))
    follow_ups = draw(
        st.lists(
            st.fixed_dictionaries(
                {"delay": delays, "only_if_not_rebooked": st.booleans()},
                optional={"template": st.sampled_from(["review", "thanks"])},
            ),
            max_size=6,
        )
    )
    notifications = {
        "confirmation": draw(st.booleans()),
        "cancellation": draw(st.booleans()),
        "reschedule": draw(st.booleans()),
        "reminders": [{"offset": offset} for offset in reminders],
        "sms_reminder": {"enabled": draw(st.booleans()), "offset": draw(sms_offsets)},
        "follow_ups": follow_ups,
    }
    return account(notifications, plan=draw(st.sampled_from(["emerging", "growing", "powerhouse"])))


@st.composite
def appointments(draw: st.DrawFn) -> Appointment:
    start = NOW + draw(lefts)
    return appointment(
        start.astimezone(PARIS),
        phone=draw(st.sampled_from([None, "+33612345678"])),
        notify=draw(st.booleans()),
        previous_start=(NOW + draw(lefts)).isoformat(),
    )


def check_timing(acct: Account, plan: Plan, start: datetime) -> None:
    keys = [(item.kind, item.channel, item.index) for item in plan]
    assert len(keys) == len(set(keys)), "one entry per notification"
    planned = [item for item in plan if isinstance(item, Planned)]
    for item in planned:
        assert item.at >= NOW
        assert item.at.tzinfo is UTC
        if item.kind == "reminder":
            assert item.at < start
            assert item.at == NOW or item.at == start - _offset(acct, item)
        elif item.kind == "follow_up":
            assert item.at > start
            assert item.at == start + acct.notifications.follow_ups[item.index].delay
        else:
            assert item.at == NOW
    email_reminders = [
        item.at for item in planned if item.kind == "reminder" and item.channel == "email"
    ]
    assert len(email_reminders) == len(set(email_reminders)), "two reminders at one instant"
    follow_ups = [item for item in planned if item.kind == "follow_up"]
    assert len(follow_ups) <= (1 if acct.plan == "emerging" else 6)
    if start - NOW < H:
        assert not any(item.kind == "reminder" for item in planned)


def _offset(acct: Account, item: Planned) -> timedelta:
    if item.channel == "sms":
        return acct.notifications.sms_reminder.offset
    return acct.notifications.reminders[item.index].offset


@settings(max_examples=300, deadline=None)
@given(accounts(), appointments())
def test_booking_invariants(acct: Account, booked: Appointment) -> None:
    plan = plan_booking(acct, booked, NOW)
    check_timing(acct, plan, booked.start.astimezone(UTC))
    kinds = {item.kind for item in plan}
    assert kinds == {"confirmation", "reminder", "follow_up"}
    if not booked.notify:
        assert not any(isinstance(item, Planned) for item in plan)


@settings(max_examples=300, deadline=None)
@given(accounts(), appointments())
def test_reschedule_invariants(acct: Account, moved: Appointment) -> None:
    plan = plan_reschedule(acct, moved, NOW)
    check_timing(acct, plan, moved.start.astimezone(UTC))
    assert plan[0].kind == "reschedule"
    assert not any(item.kind == "confirmation" for item in plan)
    if not moved.notify:
        assert not any(isinstance(item, Planned) for item in plan)
    # relative to the new start only: the same as a booking at that time, bar the first notice
    assert plan[1:] == plan_booking(acct, moved, NOW)[1:]
    assert (
        plan[1:]
        == plan_reschedule(acct, moved.model_copy(update={"previous_start": None}), NOW)[1:]
    )


@settings(max_examples=100, deadline=None)
@given(accounts(), appointments())
def test_cancellation_and_resend_are_one_notice_now(acct: Account, appt: Appointment) -> None:
    for event, kind in ((plan_cancellation, "cancellation"), (plan_resend, "confirmation")):
        [item] = event(acct, appt, NOW)
        assert item.kind == kind
        assert isinstance(item, Planned) == (appt.notify and getattr(acct.notifications, kind))
        assert not isinstance(item, Planned) or item.at == NOW


@settings(max_examples=500, deadline=None)
@given(lefts, offsets | sms_offsets)
def test_reminder_at_rule(left: timedelta, offset: timedelta) -> None:
    start = NOW + left
    result = reminder_at(start, offset, NOW)
    if isinstance(result, str):
        assert left < H or (start - offset < NOW and 3 * left < 2 * offset)
    else:
        assert NOW <= result < start
        assert left >= H
        if start - offset >= NOW:
            assert result == start - offset
        else:
            assert result == NOW and 3 * left >= 2 * offset


# --- timetables: the plans as the planner keeps them ---


def as_is(timetable: Timetable) -> Timetable:
    return timetable


def rules_timetable(kind: str, acct: Account, appt: Appointment, now: datetime) -> Timetable:
    """What the rules give, each time in microseconds after the start (None: at once)."""
    start = appt.start.astimezone(UTC)
    return tuple(
        (item.kind, item.channel, item.index, item.only_if_not_rebooked,
         None if item.at <= now else (item.at - start) // US)
        if isinstance(item, Planned) else item
        for item in PLANS[kind](acct, appt, now)
    )  # fmt: skip


def start_micros(appt: Appointment) -> int:
    return (appt.start - datetime(1970, 1, 1, tzinfo=UTC)) // US


# Another start, and what else the rules read of an appointment.
changes = st.fixed_dictionaries(
    {
        "start": (lefts | lefts.map(lambda left: left + 7 * US)).map(lambda left: NOW + left),
        "notify": st.booleans(),
        "type": st.sampled_from(["cut", "quiet", "unlisted"]),
        "clients": st.sampled_from(
            [
                [Client(name="Zoé", emails=["zoe@example.com"], phone="+33612345678")],
                [Client(name="Zoé", emails=["zoe@example.com"], phone=None)],
            ]
        ),
    }
)


@settings(max_examples=500, deadline=None)
@given(accounts(), appointments(), st.lists(changes, min_size=1, max_size=6),
       st.sampled_from(sorted(PLANS)))  # fmt: skip
def test_a_timetable_is_what_the_rules_give(
    acct: Account, appt: Appointment, others: list[dict[str, Any]], kind: str
) -> None:
    # One Timetables for all, so that some find those kept for an earlier appointment.
    timetables = Timetables(as_is)
    for other in others:
        moved = appt.model_copy(update=other)
        start, timetable = timetables.of(kind, acct, moved, NOW)
        assert start == start_micros(moved)
        assert timetable == rules_timetable(kind, acct, moved, NOW)


@pytest.mark.parametrize(
    ("notifications", "longest"),
    [
        ({"reminders": [{"offset": "2d"}, {"offset": "24h"}], **SMS_ON}, 48 * H),
        ({"reminders": [{"offset": "24h"}], "sms_reminder": {"enabled": True, "offset": "3d"}},
         72 * H),
        ({"reminders": [], "sms_reminder": {"offset": "15m"}}, H),
    ],
    ids=["an e-mail reminder's", "the SMS reminder's", "the minimum notice"],
)  # fmt: skip
@pytest.mark.parametrize("beyond", [-US, 0 * US, US], ids=["inside", "at", "beyond"])
def test_a_timetable_at_the_edge_of_the_longest_offset(
    notifications: dict[str, Any], longest: timedelta, beyond: timedelta
) -> None:
    acct = account(notifications)
    timetables = Timetables(as_is)
    for appt in (appointment(NOW + 30 * 24 * H), appointment(NOW + longest + beyond)):
        assert timetables.of("appointment.booked", acct, appt, NOW)[1] == rules_timetable(
            "appointment.booked", acct, appt, NOW
        )


@pytest.mark.parametrize("kind", sorted(PLANS))
def test_timetables_kept_for_one_appointment_are_not_another_kinds(kind: str) -> None:
    # What the rules read of an appointment besides its start, changed one at a time.
    acct = account(SMS_ON)
    timetables = Timetables(as_is)
    appt = appointment(NOW + 30 * 24 * H)
    for other in (
        appt,
        appt.model_copy(update={"notify": False}),
        appt.model_copy(update={"type": "quiet"}),
        appointment(NOW + 30 * 24 * H, phone=None),
    ):
        assert timetables.of(kind, acct, other, NOW)[1] == rules_timetable(kind, acct, other, NOW)
    for other_kind in sorted(PLANS):
        assert timetables.of(other_kind, acct, appt, NOW)[1] == rules_timetable(
            other_kind, acct, appt, NOW
        )


def test_a_changed_account_gets_its_own_timetables() -> None:
    timetables = Timetables(as_is)
    appt = appointment(NOW + 30 * 24 * H)
    for offset in ("24h", "2d"):
        acct = account({"reminders": [{"offset": offset}]})
        _, timetable = timetables.of("appointment.booked", acct, appt, NOW)
        assert timetable == rules_timetable("appointment.booked", acct, appt, NOW)


def test_a_timetable_kept_is_laid_out_once() -> None:
    laid_out: list[Timetable] = []

    def lay_out(timetable: Timetable) -> int:
        laid_out.append(timetable)
        return len(laid_out)

    timetables = Timetables(lay_out)
    acct = account(SMS_ON)
    far = [appointment(NOW + days * 24 * H) for days in (30, 31, 32)]
    assert [timetables.of("appointment.booked", acct, appt, NOW)[1] for appt in far] == [1, 1, 1]
    # Near ones are laid out each time, from what the rules give them.
    near = appointment(NOW + 2 * H)
    assert timetables.of("appointment.booked", acct, near, NOW)[1] == 2
    assert laid_out[1] == rules_timetable("appointment.booked", acct, near, NOW)
