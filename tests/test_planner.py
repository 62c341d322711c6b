"""The planner through a real Redis, the real e-mail path and a settable clock: an
appointment booked, moved and cancelled, and what its history shows."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.clock import rfc3339
from gateway.events import Event
from gateway.handlers import ARRIVAL, Handler
from gateway.jobs import Job, parse_job
from gateway.notifications import entry_middle, notification_job, waiting_in
from gateway.ordering import order_key
from gateway.queue import NotificationPlan
from tests.conftest import FixedClock
from tests.gateway_harness import Gateway
from tests.smtp_server import SmtpServer

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW.timestamp())


def appointment_job(job_id: str, kind: str, start: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "id": job_id,
        "kind": kind,
        "account": "atelier-elodie",
        "appointment": {
            "id": "appt-7",
            "calendar": "101",
            "type": "2001",
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=45)).isoformat(),
            "timezone": "Europe/Paris",
            "clients": [
                {"name": "Zoé Martin", "emails": ["zoe@example.com"], "phone": "06 12 34 56 78"}
            ],
            **extra,
        },
    }


def booking_plan(
    appointment: str,
    source: str,
    context: bytes,
    start: float,
    entries: list[str],
    dues: list[int],
    made_now: list[tuple[str, bytes]] | None = None,
) -> NotificationPlan:
    """What the planner gives the queue for a first booking of the example account, without
    clients: `entries` waiting (due at `dues`, epoch ms) and `made_now`, jobs made at once."""
    return NotificationPlan(
        appointment=appointment,
        account="atelier-elodie",
        source=source,
        context=context,
        replace=False,
        ttl=3600,
        clients=[],
        start=start,
        cancelled=False,
        entries=entries,
        dues=dues,
        made_now=made_now or [],
        order=order_key("appointment.booked", 0, "1-0"),
    )


async def history(redis: Redis) -> list[dict[str, Any]]:
    return [json.loads(f["event"]) for _, f in await redis.xrange("mailgw:history:appt-7")]


async def planned(gateway: Gateway) -> list[tuple[str, str, str]]:
    """What the appointment has made now and waits to make: (kind, channel, send time)."""
    stream = await gateway.queue.redis.xrange("mailgw:jobs")
    made = [(j["template"], j["kind"].split(".")[0], "now") for j in _jobs(stream)]
    waiting = await gateway.queue.waiting_notifications("appt-7")
    return made + [(w.kind, w.channel, rfc3339(w.due_ms / 1000)) for w in waiting]


def _jobs(stream: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(fields["job"]) for _, fields in stream]


async def next_due(redis: Redis) -> float | None:
    """When the next waiting job, retry or notification falls due."""
    due = [
        score
        for key in ("mailgw:scheduled", "mailgw:retry", "mailgw:notifications")
        for _, score in await redis.zrange(key, 0, 0, withscores=True)
    ]
    return min(due) / 1000 if due else None


async def run_until(gateway: Gateway, clock: FixedClock, moment: datetime) -> None:
    """Let time pass to `moment`, running every job and retry that falls due on the way."""
    while True:
        await gateway.drain()
        due = await next_due(gateway.queue.redis)
        if due is None or due > moment.timestamp():
            break
        clock.current = max(clock.current, due)
        await gateway.queue.promote_due(100)
    clock.current = moment.timestamp()


async def test_booked_then_moved_then_cancelled(
    gateway: Gateway, redis: Redis, smtp: SmtpServer, clock: FixedClock
) -> None:
    start = NOW + timedelta(days=5)
    await gateway.queue.ensure_group()
    booked = appointment_job("b1", "appointment.booked", start)
    await gateway.queue.enqueue(parse_job(json.dumps(booked)))
    [delivery] = await gateway.queue.read("test", 10, 10)
    await gateway.worker.process(delivery)
    first_plan = await planned(gateway)
    # The example account, for an appointment at 09:00 UTC on the 28th: the confirmation
    # now, e-mail reminders 2d, 24h and 2h before, the SMS reminder 3h before, and two
    # follow-ups (growing plan), in the order they fall due.
    assert first_plan == [
        ("confirmation", "email", "now"),
        ("reminder", "email", "2026-11-26T09:00:00.000Z"),
        ("reminder", "email", "2026-11-27T09:00:00.000Z"),
        ("reminder", "sms", "2026-11-28T06:00:00.000Z"),
        ("reminder", "email", "2026-11-28T07:00:00.000Z"),
        ("follow_up", "email", "2026-11-29T09:00:00.000Z"),
        ("follow_up", "email", "2026-12-28T09:00:00.000Z"),
    ]
    await gateway.drain()
    assert [m.recipients for m in smtp.messages] == [["zoe@example.com"]]  # the confirmation

    # The first reminder goes out at its time.
    await run_until(gateway, clock, NOW + timedelta(days=3, hours=1))
    assert len(smtp.messages) == 2

    # Moved two days later: the pending ones are dropped and planned again.
    new_start = start + timedelta(days=2)
    await gateway.run(appointment_job("r1", "appointment.rescheduled", new_start))
    [dropped] = [e for e in await history(redis) if e["status"] == "dropped"]
    left = [(n["kind"], n["channel"]) for n in dropped["notifications"]]
    assert sorted(left) == sorted((kind, channel) for kind, channel, _ in first_plan[2:])
    waiting = {kind for kind, _, _ in await planned(gateway)}
    assert "confirmation" not in waiting and "reminder" in waiting

    # Nothing of the old time is sent; the new 2d reminder is.
    await run_until(gateway, clock, new_start - timedelta(hours=30))
    subjects = [m.data for m in smtp.messages]
    assert len(subjects) == 4  # confirmation, first reminder, reschedule notice, new 2d reminder

    # Cancelled: what was pending is dropped, the cancellation is sent, nothing after.
    await gateway.run(appointment_job("c1", "appointment.cancelled", new_start))
    await run_until(gateway, clock, new_start + timedelta(days=60))
    assert len(smtp.messages) == 5
    statuses = [(e.get("kind"), e["status"]) for e in await history(redis)]
    assert ("cancellation", "sent") in statuses
    assert await next_due(redis) is None

    # Each SMS reminder was dropped with its time, before it came due; nothing failed.
    assert gateway.texts() == []
    assert not [e for e in await gateway.events() if e["status"] == "failed"]


async def test_a_move_cancels_the_notifications_made_and_not_yet_sent(
    gateway: Gateway, redis: Redis, smtp: SmtpServer, clock: FixedClock
) -> None:
    start = NOW + timedelta(days=5)
    await gateway.queue.ensure_group()
    booked = parse_job(json.dumps(appointment_job("b9", "appointment.booked", start)))
    await gateway.planner.handle(booked, 1)
    clock.current = (start - timedelta(days=2)).timestamp()
    await gateway.queue.promote_due(100)
    made = ["b9/confirmation/0/email/zoe@example.com", "b9/reminder/0/email/zoe@example.com"]
    assert [j["id"] for j in _jobs(await redis.xrange("mailgw:jobs"))] == made

    new_start = start + timedelta(days=1)
    moved = parse_job(json.dumps(appointment_job("m9", "appointment.rescheduled", new_start)))
    await gateway.planner.handle(moved, 1)
    [dropped] = [e for e in await history(redis) if e["status"] == "dropped"]
    assert [n["job"] for n in dropped["notifications"] if "job" in n] == made
    await gateway.drain()
    skipped = [(e["job"], e["reason"]) for e in await gateway.events() if e["status"] == "skipped"]
    assert skipped == [(job, "cancelled before it was done") for job in made]
    assert len(smtp.messages) == 1  # the reschedule notice

    # The queue's own cancellation finds the jobs a planning made too, but those done.
    clock.current = (new_start - timedelta(days=2)).timestamp()
    await gateway.queue.promote_due(100)
    cancelled = await gateway.queue.cancel_appointment("appt-7")
    assert cancelled == ["m9/reminder/0/email/zoe@example.com"]
    assert await gateway.queue.cancel_appointment("appt-7") == []


async def test_a_job_made_at_once_is_the_job_made_when_due(
    gateway: Gateway, redis: Redis, clock: FixedClock
) -> None:
    # The jobs of notifications due at once are built in Python
    # (notifications.notification_job), those made when due in Lua
    # (gateway/lua/notification_job.lua): the same notifications give the same jobs.
    context = '{"appointment":{"id":"a\\"7","clients":[{"name":"Zoé"}]}}'.encode()
    notifications = [
        ("follow_up", 1, "email", True, "zoé.o'hara@example.com"),
        ("reminder", 0, "sms", False, "+33612345678"),
    ]
    now = int(clock.now() * 1000)
    # The same deadline, an hour ahead, for the follow-up; none for the reminder.
    deadlines = {"follow_up": now + 3_600_000, "reminder": None}
    for appointment, source, due in (('a"7', "b/1", now), ('a"8', "b/2", now + 1000)):
        made_now: list[tuple[str, bytes]] = []
        entries: list[str] = []
        for kind, index, channel, flag, to in notifications:
            if due == now:
                made = notification_job(
                    source, "atelier-elodie", appointment, context, kind, index, channel, to, flag,
                    deadlines[kind],
                )  # fmt: skip
                made_now.append(made)
            else:
                deadline = deadlines[kind]
                late = None if deadline is None else deadline - due
                entries.append(f"{due}{entry_middle(kind, index, channel, flag, late)}{to}")
        plan = booking_plan(
            appointment, source, context, clock.now(), entries, [due] * len(entries), made_now
        )
        await gateway.queue.plan_notifications(plan)
    clock.current += 1
    assert await gateway.queue.promote_due(100) == 2
    made = [json.loads(fields["job"]) for _, fields in await redis.xrange("mailgw:jobs")]
    at_once, when_due = made[:2], made[2:]
    for job in when_due:
        job["id"] = job["id"].replace("b/2/", "b/1/")
        job["appointment"] = 'a"7'
    assert at_once == when_due
    assert at_once[0]["context"]["only_if_not_rebooked"] is True
    # A follow-up's place in the account's list, which names its template.
    assert at_once[0]["context"]["follow_up"] == 1
    assert "follow_up" not in at_once[1]["context"]
    assert [job["to"] for job in at_once] == [["zoé.o'hara@example.com"], "+33612345678"]
    an_hour_on = datetime.fromtimestamp(now // 1000 + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [job.get("expires_at") for job in at_once] == [an_hour_on, None]


async def test_staff_chose_not_to_notify(gateway: Gateway, redis: Redis, smtp: SmtpServer) -> None:
    start = NOW + timedelta(days=5)
    await gateway.run(appointment_job("b2", "appointment.booked", start, notify=False))
    assert smtp.messages == []
    reasons = {e["reason"] for e in await history(redis) if e["status"] == "skipped"}
    assert reasons == {"staff chose not to notify"}
    assert await next_due(redis) is None


async def test_follow_up_only_if_not_rebooked_is_checked_when_due(
    gateway: Gateway, redis: Redis, smtp: SmtpServer, clock: FixedClock
) -> None:
    start = NOW + timedelta(days=1)
    await gateway.run(appointment_job("b3", "appointment.booked", start))
    later = appointment_job("b4", "appointment.booked", start + timedelta(days=20))
    later["appointment"]["id"] = "appt-8"
    await gateway.run(later)
    # The example account's follow-ups: 1 day after (its template "merci") and 30 days
    # after, only if the client has not booked again.
    await run_until(gateway, clock, start + timedelta(days=31))
    follow_ups = [
        (e["status"], e["reason"])
        for e in await gateway.events()
        if e.get("appointment") == "appt-7" and e["kind"] == "follow_up"
    ]
    assert [status for status, _ in follow_ups] == ["sent", "skipped"]
    assert follow_ups[1][1] == "the client has booked again since"
    merci = [m for m in smtp.messages if b"Subject: Merci de votre visite" in m.data]
    assert len(merci) == 2  # appt-7's and appt-8's first follow-ups


async def test_the_same_booking_twice_plans_once(gateway: Gateway, redis: Redis) -> None:
    start = NOW + timedelta(days=5)
    await gateway.run(appointment_job("b5", "appointment.booked", start))
    waiting = await gateway.queue.waiting_notifications("appt-7")
    assert len(waiting) == 6
    await gateway.run(appointment_job("b5", "appointment.booked", start))
    assert await gateway.queue.waiting_notifications("appt-7") == waiting
    assert await redis.zcard("mailgw:notifications") == 1


async def test_a_move_or_a_cancellation_run_again_does_what_it_did_once(
    gateway: Gateway, redis: Redis
) -> None:
    start = NOW + timedelta(days=5)
    await gateway.planner.handle(
        parse_job(json.dumps(appointment_job("b9", "appointment.booked", start))), 1
    )
    for job_id, kind, notice in (
        ("m9", "appointment.rescheduled", "reschedule"),
        ("c9", "appointment.cancelled", "cancellation"),
    ):
        job = parse_job(json.dumps(appointment_job(job_id, kind, start + timedelta(days=1))))
        events = await gateway.planner.handle(job, 1)
        once = await snapshot(redis)
        # Run again, as when a worker died before recording it done: its notice, made the
        # first time, is not cancelled, and its history records no drop of its own plan.
        assert await gateway.planner.handle(job, 2) == events
        assert await snapshot(redis) == once
        assert once[f"mailgw:job:{job_id}/{notice}/0/email/zoe@example.com"][0] == "q:"


async def test_a_cancellation_cancels_what_every_planning_before_made(
    gateway: Gateway, redis: Redis, clock: FixedClock
) -> None:
    start = NOW + timedelta(days=5)
    booked = parse_job(json.dumps(appointment_job("b10", "appointment.booked", start)))
    await gateway.planner.handle(booked, 1)
    # Booked again under another job id (the scheduling service sent it twice).
    again = appointment_job("b11", "appointment.booked", start)
    await gateway.planner.handle(parse_job(json.dumps(again)), 1)
    # The 2d and 24h reminders fall due and are made (not sent yet); then the first
    # booking is run again, so late that they are not planned again.
    clock.current = (start - timedelta(hours=24)).timestamp()
    await gateway.queue.promote_due(100)
    clock.current = (start - timedelta(hours=12)).timestamp()
    await gateway.planner.handle(booked, 2)
    cancelled = appointment_job("c10", "appointment.cancelled", start)
    await gateway.planner.handle(parse_job(json.dumps(cancelled)), 1)
    made = [
        "b10/confirmation/0/email",
        "b11/confirmation/0/email",
        "b11/reminder/0/email",
        "b11/reminder/1/email",
    ]
    states = [await redis.get(f"mailgw:job:{job}/zoe@example.com") for job in made]
    assert states == ["cancelled"] * len(made)


async def test_a_resend_keeps_what_is_planned_and_the_sequence(
    gateway: Gateway, redis: Redis, smtp: SmtpServer, clock: FixedClock
) -> None:
    start = NOW + timedelta(days=5)
    await gateway.run(appointment_job("b6", "appointment.booked", start))
    await gateway.run(appointment_job("m6", "appointment.rescheduled", start + timedelta(days=1)))
    waiting = await gateway.queue.waiting_notifications("appt-7")
    await gateway.run(appointment_job("s6", "appointment.confirmation.resend", start))
    assert await gateway.queue.waiting_notifications("appt-7") == waiting
    sequences = [re.findall(rb"SEQUENCE:(\d+)", m.data) for m in smtp.messages]
    assert [s[0] for s in sequences] == [b"0", b"1", b"1"]  # booked, moved, resent

    # Cancelled after the resend: nothing planned before is sent.
    await gateway.run(appointment_job("x6", "appointment.cancelled", start + timedelta(days=1)))
    await run_until(gateway, clock, start + timedelta(days=60))
    assert len(smtp.messages) == 4  # the three above, then the cancellation


def purchase(job_id: str, kind: str, **fields: Any) -> dict[str, Any]:
    client = {"name": "Zoé Martin", "emails": ["zoe@example.com"]}
    subscription = {"id": "sub-1", "name": "Forfait", "client": client}
    body: dict[str, Any] = {"v": 1, "id": job_id, "kind": kind, "account": "atelier-elodie"}
    if kind == "order.placed":
        body |= {
            "product": "gift_certificate",
            "order": {"id": "o1", "name": "Carte", "client": client},
        }
    else:
        body["subscription"] = subscription
    return body | fields


async def test_orders_and_subscriptions_follow_the_product_rules(
    gateway: Gateway, smtp: SmtpServer
) -> None:
    await gateway.run(purchase("o1", "order.placed"))
    await gateway.run(purchase("p1", "subscription.paid", first_charge=True))
    await gateway.run(purchase("p2", "subscription.paid"))
    await gateway.run(purchase("c1", "subscription.cancelled", by="owner"))
    await gateway.run(purchase("c2", "subscription.cancelled", by="payment_failure"))
    await gateway.run(purchase("r1", "subscription.renewal_upcoming"))
    outcomes = {
        e["job"]: (e["status"], e.get("reason"))
        for e in await gateway.events()
        if e["kind"] != "email.send"
    }
    assert outcomes["p1"] == ("skipped", "no payment notice for the first purchase")
    assert outcomes["c1"] == ("skipped", "cancelled by the owner: the client is not notified")
    sent = {e["job"].split("/")[0] for e in await gateway.events() if e["status"] == "sent"}
    assert sent == {"o1", "p2", "c2", "r1"}
    assert len(smtp.messages) == 4


def booking(job_id: str, kind: str, appointment: str, start: datetime, **extra: Any) -> Any:
    job = appointment_job(job_id, kind, start, **extra)
    job["appointment"]["id"] = appointment
    return parse_job(json.dumps(job))


async def arrived(planner: Handler, job: Job, arrival: str) -> list[Event]:
    """What a worker's run of `job` does, with the arrival its claim recorded."""
    token = ARRIVAL.set(arrival)
    try:
        return await planner.handle(job, 1)
    finally:
        ARRIVAL.reset(token)


async def snapshot(redis: Redis) -> dict[str, Any]:
    """Every key, what it holds and whether it expires; stream entries without their ids,
    which tell when they were added, and a job's state without the entry it names."""
    state: dict[str, Any] = {}
    async for key in redis.scan_iter("mailgw:*"):
        kind = await redis.type(key)
        value: Any
        if kind == "string":
            value = re.sub(r"^q:.*", "q:", await redis.get(key) or "")
        elif kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(await redis.smembers(key))
        else:
            value = [fields for _, fields in await redis.xrange(key)]
        state[key] = (value, await redis.ttl(key) > 0)
    return state


async def test_jobs_planned_together_do_what_they_do_one_by_one(
    gateway: Gateway, redis: Redis
) -> None:
    stages = [
        [
            booking("b1", "appointment.booked", "a1", NOW + timedelta(days=5)),
            # Late: the SMS reminder is made at once, the 2d and 24h reminders are skipped.
            booking("b2", "appointment.booked", "a2", NOW + timedelta(hours=2, minutes=30)),
            booking("b3", "appointment.booked", "a3", NOW + timedelta(days=5), notify=False),
            booking("b4", "appointment.booked", "a4", NOW - timedelta(minutes=30)),
        ],
        # The same jobs run again (a worker died before recording them done).
        [booking("b1", "appointment.booked", "a1", NOW + timedelta(days=5))],
        [
            booking("m1", "appointment.rescheduled", "a1", NOW + timedelta(days=6)),
            booking("m2", "appointment.rescheduled", "a2", NOW + timedelta(days=1)),
            booking("c4", "appointment.cancelled", "a4", NOW - timedelta(minutes=30)),
        ],
        # Booked twice at once: the second planning is the one that stays.
        [
            booking("b5", "appointment.booked", "a5", NOW + timedelta(days=5)),
            booking("b6", "appointment.booked", "a5", NOW + timedelta(days=6)),
        ],
    ]
    stages[1] += stages[0][1:]
    # Each job with the place in the order of arrivals its claim recorded.
    arrivals: dict[str, str] = {}
    for job in (job for jobs in stages for job in jobs):
        arrivals.setdefault(job.id, f"{len(arrivals) + 1}-0")

    async def run(together: bool) -> list[Any]:
        outcomes: list[Any] = []
        for jobs in stages:
            runs = [arrived(gateway.planner, job, arrivals[job.id]) for job in jobs]
            if together:
                events = await asyncio.gather(*runs)
            else:
                events = [await run for run in runs]
            outcomes.append((events, await snapshot(redis)))
        return outcomes

    one_by_one = await run(together=False)
    await redis.flushall()
    await redis.config_resetstat()
    together = await run(together=True)
    assert together == one_by_one
    stats: Any = await redis.info("commandstats")
    # One script call per stage, and one more for the moves' sequences.
    assert stats["cmdstat_evalsha"]["calls"] == len(stages) + 1

    # What the stages did: the first two left the same state, the moves dropped and
    # cancelled what the bookings had planned and made.
    (booked_events, booked), (again_events, again), (_, moved), _ = together
    assert again == booked and again_events == booked_events
    assert [len(events) for events in booked_events] == [0, 2, 7, 4]  # skipped ones
    assert moved["mailgw:job:b2/reminder/0/sms/+33612345678"][0] == "cancelled"
    [dropped] = [json.loads(fields["event"]) for fields in moved["mailgw:history:a2"][0]]
    assert {"job": "b2/reminder/0/sms/+33612345678"} in dropped["notifications"]
    assert "mailgw:bookings:atelier-elodie:zoe@example.com" in moved
    assert waiting_in(moved["mailgw:apptdata:a4"][0]) == []


async def test_an_appointment_waits_once_for_its_next_notification(
    gateway: Gateway, redis: Redis, clock: FixedClock
) -> None:
    start = NOW + timedelta(days=5)
    await gateway.run(appointment_job("b8", "appointment.booked", start))
    first = await gateway.queue.waiting_notifications("appt-7")
    assert len(first) == 6
    assert await redis.zrange("mailgw:notifications", 0, -1, withscores=True) == [
        ("appt-7", first[0].due_ms)
    ]
    assert (await gateway.queue.depths()).scheduled == 6

    # The first falls due: its job is made, the appointment waits for the second.
    clock.current = first[0].due_ms / 1000
    assert await gateway.queue.promote_due(100) == 1
    assert await gateway.queue.waiting_notifications("appt-7") == first[1:]
    assert await redis.zscore("mailgw:notifications", "appt-7") == first[1].due_ms
    assert (await gateway.queue.depths()).scheduled == 5

    # Cancelled: nothing waits any more, and the count says so.
    await gateway.run(appointment_job("x8", "appointment.cancelled", start))
    assert await gateway.queue.waiting_notifications("appt-7") == []
    assert await redis.zcard("mailgw:notifications") == 0
    assert (await gateway.queue.depths()).scheduled == 0


async def test_a_booking_is_kept_at_its_exact_start(gateway: Gateway, redis: Redis) -> None:
    bookings = "mailgw:bookings:atelier-elodie:zoe@example.com"
    for start in (NOW + timedelta(days=5), NOW + timedelta(days=5, microseconds=50_001)):
        await gateway.run(appointment_job(f"b-{start.microsecond}", "appointment.booked", start))
        assert await redis.zscore(bookings, "appt-7") == start.timestamp()


async def test_what_an_appointment_keeps_lasts_until_its_last_notification(
    gateway: Gateway, redis: Redis
) -> None:
    # Booked far ahead: its data, its client's bookings and the number's SMS wait outlive
    # the history's lifetime (a day here) until its last follow-up is made, and a day more.
    await gateway.run(appointment_job("b9", "appointment.booked", NOW + timedelta(days=500)))
    last = max(w.due_ms for w in await gateway.queue.waiting_notifications("appt-7")) / 1000
    kept = last - NOW.timestamp() + 86400
    shared = ["mailgw:bookings:atelier-elodie:zoe@example.com", "mailgw:smswait:+33612345678"]
    for key in ["mailgw:apptdata:appt-7", *shared]:
        assert kept - 5 <= await redis.ttl(key) <= kept, key

    # Another appointment of the same client, soon and then cancelled, shortens nothing.
    soon = appointment_job("b10", "appointment.booked", NOW + timedelta(days=2))
    soon["appointment"]["id"] = "appt-8"
    await gateway.run(soon)
    await gateway.run({**soon, "id": "x10", "kind": "appointment.cancelled"})
    for key in shared:
        assert kept - 5 <= await redis.ttl(key) <= kept, key

    # Moved: its calendar SEQUENCE is kept until a day after its new start.
    start = NOW + timedelta(days=501)
    await gateway.run(appointment_job("m9", "appointment.rescheduled", start))
    sequence = start.timestamp() - NOW.timestamp() + 86400
    assert sequence - 5 <= await redis.ttl("mailgw:seq:appt-7") <= sequence
