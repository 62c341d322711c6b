"""Delivery deadlines (PRODUCT.md): a notification past its latest useful delivery time is
expired, not sent, whatever delayed it (a relay deferring it, a backlog, an outage); when
more is due than goes out at once, the nearest deadline goes first. Through a real Redis,
the real e-mail path to the loopback SMTP server and the `file` SMS provider."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from gateway.clock import rfc3339
from gateway.jobs import parse_job
from gateway.lua import lua_source
from gateway.notifications import entry_middle, waiting_in
from gateway.settings import DeadlinesSettings
from tests.conftest import FixedClock
from tests.gateway_harness import Gateway
from tests.smtp_server import SmtpServer
from tests.test_planner import NOW, appointment_job, booking_plan, history, run_until

START = NOW + timedelta(days=2)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW.timestamp())


def email_job(job_id: str, to: str, expires_at: datetime | None, **fields: Any) -> dict[str, Any]:
    job = {
        "v": 1,
        "id": job_id,
        "kind": "email.send",
        "account": "atelier-elodie",
        "to": [to],
        "subject": f"Message {job_id}",
        "text": "Bonjour",
        **fields,
    }
    if expires_at is not None:
        job["expires_at"] = expires_at.isoformat()
    return job


def outcomes(events: list[dict[str, Any]], channel: str = "email") -> list[tuple[str, str]]:
    return [(e["kind"], e["status"]) for e in events if e.get("channel") == channel]


async def test_a_reminder_the_relay_defers_until_after_the_start_expires_unsent(
    gateway: Gateway, redis: Redis, smtp: SmtpServer, clock: FixedClock
) -> None:
    # The relay defers every message from the booking until an hour after the start.
    smtp.deferring = True
    await gateway.run(appointment_job("b1", "appointment.booked", START))
    await run_until(gateway, clock, START + timedelta(hours=1))
    smtp.deferring = False
    # Back, it is offered nothing of what was due before the start: not on a retry.
    await run_until(gateway, clock, START + timedelta(hours=2))
    assert smtp.messages == []
    email = outcomes(await history(redis))
    # The confirmation and the 2d, 24h and 2h reminders (the 2d one due at once), each
    # deferred at every try before its deadline, then expired.
    assert {outcome for outcome in email if outcome[1] == "deferred"} == {
        ("confirmation", "deferred"), ("reminder", "deferred")
    }  # fmt: skip
    final = [outcome for outcome in email if outcome[1] != "deferred"]
    assert sorted(final) == [("confirmation", "expired")] + [("reminder", "expired")] * 3
    assert ("reminder", "sent") not in email
    expired = [e for e in await gateway.events() if e["status"] == "expired"]
    start = rfc3339(START.timestamp())
    assert {e["reason"].split(" (")[0] for e in expired} == {
        f"not sent: the next attempt would come after the appointment's start, {start}"
    }
    # Each gave up at its last deferral before the start, not at the relay's 5 days.
    assert all(e["at"] < start for e in expired)
    assert all("450 4.2.1" in e["reason"] for e in expired)


async def test_a_job_past_its_expires_at_is_expired_not_sent(
    gateway: Gateway, smtp: SmtpServer, clock: FixedClock
) -> None:
    await gateway.run(email_job("late", "zoe@example.com", NOW - timedelta(seconds=1)))
    await gateway.run(email_job("in-time", "zoe@example.com", NOW + timedelta(seconds=1)))
    assert [m.recipients for m in smtp.messages] == [["zoe@example.com"]]
    events = await gateway.events()
    assert [(e["job"], e["status"]) for e in events] == [("late", "expired"), ("in-time", "sent")]
    assert events[0]["reason"] == (
        f"not sent: its deadline, {rfc3339(NOW.timestamp() - 1)}, had passed"
    )


async def test_a_send_interrupted_then_past_its_deadline_is_not_sent_again(
    gateway: Gateway, smtp: SmtpServer, redis: Redis, clock: FixedClock
) -> None:
    # A worker killed while sending leaves its mark; the job is reclaimed after its
    # deadline. SMTP cannot say whether the relay took it: not sent a second time, late.
    await redis.hset("mailgw:inflight:late", "zoe@example.com", "abcdefghijklmnopqrstuvwxyz")
    await gateway.run(email_job("late", "zoe@example.com", NOW - timedelta(minutes=1)))
    assert smtp.messages == []
    [event] = await gateway.events()
    assert event["status"] == "expired"
    assert await redis.hkeys("mailgw:inflight:late") == []


async def test_an_sms_reminder_past_the_start_after_an_outage_is_expired_not_sent(
    gateway: Gateway, redis: Redis, smtp: SmtpServer, clock: FixedClock
) -> None:
    await gateway.run(appointment_job("b1", "appointment.booked", START))
    # No worker ran from before the reminders fell due until after the start.
    clock.current = (START + timedelta(minutes=1)).timestamp()
    await gateway.queue.promote_due(100)
    await gateway.drain()
    assert gateway.texts() == []
    events = await history(redis)
    [sms] = [e for e in events if e.get("channel") == "sms" and e["kind"] == "reminder"]
    assert sms["status"] == "expired"
    assert sms["reason"] == f"not sent: the appointment started at {rfc3339(START.timestamp())}"
    # Nor the 24h and 2h e-mail reminders; the confirmation and the 2d reminder went at the
    # booking.
    assert sorted(outcomes(events)) == [
        ("confirmation", "sent"), ("reminder", "expired"), ("reminder", "expired"),
        ("reminder", "sent"),
    ]  # fmt: skip
    assert len(smtp.messages) == 2


async def test_a_backlog_after_an_outage_goes_nearest_deadline_first(
    gateway: Gateway, smtp: SmtpServer, clock: FixedClock
) -> None:
    # Six messages, enqueued farthest deadline first (their ids too: retries due at the same
    # time come in the order of their ids), deferred by a relay that is down.
    deadlines = {f"j{n}": NOW + timedelta(minutes=70 - 10 * n) for n in range(1, 7)}
    smtp.deferring = True
    for job_id, deadline in deadlines.items():
        await gateway.run(email_job(job_id, f"{job_id}@example.com", deadline))
    assert smtp.messages == []
    # The relay comes back 25 minutes on: the retries, due since the fifth minute, are
    # promoted two at a time.
    smtp.deferring = False
    clock.advance(25 * 60)
    assert await gateway.queue.promote_due(2) == 6
    await gateway.drain()
    sent = [m.recipients[0].split("@")[0] for m in smtp.messages]
    # Deadlines 30, 40, 50 and 60 minutes on.
    assert sent == ["j4", "j3", "j2", "j1"]
    events = [e for e in await gateway.events() if e["status"] != "deferred"]
    assert [(e["job"], e["status"]) for e in events] == [
        ("j6", "expired"),
        ("j5", "expired"),
        ("j4", "sent"),
        ("j3", "sent"),
        ("j2", "sent"),
        ("j1", "sent"),
    ]


async def test_the_deadlines_follow_the_settings(
    gateway: Gateway, redis: Redis, smtp: SmtpServer, clock: FixedClock
) -> None:
    # Notices allowed after the start, follow-ups a day of grace, purchases an hour.
    settings = gateway.config.settings
    deadlines = DeadlinesSettings(
        follow_up_grace=timedelta(days=1), purchase_grace=timedelta(hours=1), after_start=True
    )
    object.__setattr__(
        gateway.config, "settings", settings.model_copy(update={"deadlines": deadlines})
    )
    smtp.deferring = True
    await gateway.run(appointment_job("b1", "appointment.booked", START))
    await gateway.run(
        {
            "v": 1, "id": "o1", "kind": "order.placed", "account": "atelier-elodie",
            "product": "package",
            "order": {"id": "o1", "name": "Forfait", "client": {"name": "Zoé",
                                                                "emails": ["zoe@example.com"]}},
        }
    )  # fmt: skip
    await gateway.queue.promote_due(100)
    stored = await redis.hgetall("mailgw:payloads")
    jobs = {job["template"]: job for job in map(json.loads, stored.values())}
    # The confirmation and the 2d reminder were made at once, deferred: no deadline.
    assert "expires_at" not in jobs["confirmation"] and "expires_at" not in jobs["reminder"]
    assert jobs["order"]["expires_at"] == rfc3339_second(int(NOW.timestamp() + 3600) * 1000)
    waiting = await gateway.queue.waiting_notifications("appt-7")
    assert {w.late_ms for w in waiting if w.kind == "follow_up"} == {86_400_000}
    assert [w.late_ms for w in waiting if w.kind == "reminder"] == [None, None, None]


async def test_due_notifications_go_nearest_deadline_first(
    gateway: Gateway, redis: Redis, clock: FixedClock
) -> None:
    # Three appointments' notifications, all due; the one due last has the nearest deadline.
    now = int(clock.now() * 1000)
    waiting = {"a": (now - 3000, 3_600_000), "b": (now - 2000, None), "c": (now - 1000, 5000)}
    for appointment, (due, late) in waiting.items():
        middle = entry_middle("reminder", 0, "email", False, late)
        await gateway.queue.plan_notifications(
            booking_plan(
                appointment,
                f"b-{appointment}",
                b'{"appointment":{}}',
                clock.now(),
                [f"{due}{middle}{appointment}@example.com"],
                [due],
            )
        )
    # One appointment per call: the nearest deadline first, none last.
    assert await gateway.queue.promote_due(1) == 3
    jobs = [json.loads(fields["job"]) for _, fields in await redis.xrange("mailgw:jobs")]
    assert [(job["appointment"], job.get("expires_at")) for job in jobs] == [
        ("c", rfc3339_second(now - 1000 + 5000)),
        ("a", rfc3339_second(now - 3000 + 3_600_000)),
        ("b", None),
    ]


def rfc3339_second(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-23T09:00:00Z",
        "2026-11-23T09:00:00.25Z",
        "2026-11-23T10:30:00+01:30",
        "2026-11-23T04:00:00-05:00",
        "2024-02-29T23:59:59.999+00:00",
        "1999-12-31t23:59:59z",
        "2100-03-01 00:00:00Z",
    ],
)
def test_the_lua_reads_a_deadline_as_python_does(redis_url: str, text: str) -> None:
    client = SyncRedis.from_url(redis_url)
    script = lua_source("deadline") + "return tostring(job_deadline(ARGV[1]))"
    job = json.dumps({**email_job("x", "zoe@example.com", None), "expires_at": text})
    read = client.eval(script, 0, job)
    client.close()
    expires_at = parse_job(job).expires_at
    assert expires_at is not None
    assert int(read) == round(expires_at.timestamp() * 1000)


def test_the_lua_orders_a_job_without_a_readable_deadline_last(redis_url: str) -> None:
    client = SyncRedis.from_url(redis_url)
    script = lua_source("deadline") + "return tostring(job_deadline(ARGV[1]))"
    for job in ('{"v":1}', "not json", '{"expires_at":"tomorrow"}', '{"expires_at":7}'):
        assert client.eval(script, 0, job) == b"inf"
    client.close()


async def test_what_0_1_left_waiting_is_still_sent(
    gateway: Gateway, redis: Redis, smtp: SmtpServer, clock: FixedClock
) -> None:
    await gateway.run(appointment_job("b1", "appointment.booked", START))
    await gateway.drain()
    sent_before = len(smtp.messages)
    # As 0.1 wrote them: each waiting entry without its deadline field (the sixth).
    key = "mailgw:apptdata:appt-7"
    data = (await redis.get(key)).split("\x1d")
    data[2] = "\x1e".join(
        "\x1f".join(e.split("\x1f")[:5] + e.split("\x1f")[6:]) for e in data[2].split("\x1e")
    )
    await redis.set(key, "\x1d".join(data), keepttl=True)
    waiting = waiting_in(await redis.get(key))
    assert waiting and all(w.late_ms is None for w in waiting)
    # The 24h reminder falls due: it is sent, without a deadline.
    await run_until(gateway, clock, START - timedelta(hours=23))
    assert len(smtp.messages) == sent_before + 1
    assert outcomes(await history(redis))[-1] == ("reminder", "sent")
