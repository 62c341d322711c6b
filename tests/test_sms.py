"""Text messages through the planner, the queue and the `file` provider, on a real Redis:
the number in E.164, the default text, opt-outs and what they drop."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from gateway.jobs import parse_job
from gateway.sms_provider import IncomingText
from inbound.sms_inbox import SmsInbox
from outbound.sms.text import default_text
from tests.conftest import FixedClock
from tests.gateway_harness import Gateway
from tests.test_planner import NOW, appointment_job, history, run_until

START = NOW + timedelta(days=2)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW.timestamp())


def inbox(gateway: Gateway) -> SmsInbox:
    return SmsInbox(
        gateway.queue.redis,
        gateway.queue.keys,
        gateway.queue,
        gateway.directory,
        lambda: gateway.config.settings,
        lambda: gateway.sms.provider,
        gateway.clock,
    )


def sms_events(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [
        (e["status"], e.get("recipient", ""), e.get("reason", ""))
        for e in events
        if e.get("channel") == "sms"
    ]


def sms_job(job_id: str, **fields: Any) -> dict[str, Any]:
    return {"v": 1, "id": job_id, "kind": "sms.send", "account": "atelier-elodie", **fields}


async def test_the_reminder_reaches_the_provider_in_e164_with_the_default_text(
    gateway: Gateway, clock: FixedClock
) -> None:
    # The example account: plan growing, SMS reminder on, 3 hours before the start.
    await gateway.run(appointment_job("b1", "appointment.booked", START))
    await run_until(gateway, clock, START - timedelta(hours=3, seconds=1))
    assert gateway.texts() == []
    await run_until(gateway, clock, START - timedelta(hours=2))
    [text] = gateway.texts()
    assert text["to"] == "+33612345678"  # written "06 12 34 56 78" by the client
    expected = default_text(
        business="L'Atelier d'Élodie & Fils",
        type_name="Coupe femme",
        calendar="Élodie",
        start=START,
        zone=ZoneInfo("Europe/Paris"),
        locale="fr",
    )
    assert text["text"] == expected
    assert "Coupe femme" in expected and "Élodie" in expected and "14:00" not in expected
    assert (text["encoding"], text["parts"]) == ("gsm7", 1)
    [sent] = [e for e in await gateway.events() if e.get("channel") == "sms"]
    assert sent["status"] == "sent" and sent["appointment"] == "appt-7"
    assert sent["message_id"] == text["id"] and sent["reason"] == "1 part, GSM-7"
    assert sent["job"] == "b1/reminder/0/sms/+33612345678"
    # In the appointment's history too.
    assert any(
        e.get("channel") == "sms" and e["status"] == "sent"
        for e in await history(gateway.queue.redis)
    )


async def test_a_number_that_is_not_a_mobile_is_refused_when_planned(gateway: Gateway) -> None:
    job = appointment_job("b2", "appointment.booked", START)
    job["appointment"]["clients"][0]["phone"] = "01 23 45 67 89"
    await gateway.run(job)
    [(status, recipient, reason)] = sms_events(await gateway.events())
    assert (status, recipient) == ("failed", "01 23 45 67 89")
    assert "fixed-line" in reason
    waiting = await gateway.queue.waiting_notifications("appt-7")
    assert not [w for w in waiting if w.channel == "sms"]


async def test_stop_drops_the_waiting_text_and_start_lets_the_next_one_through(
    gateway: Gateway, clock: FixedClock, redis: Redis
) -> None:
    await gateway.run(appointment_job("b3", "appointment.booked", START))
    waiting = await gateway.queue.waiting_notifications("appt-7")
    stop = await inbox(gateway).incoming(IncomingText("+33612345678", "Stop"))
    assert stop is not None and stop.status == "opted_out"
    assert await gateway.queue.waiting_notifications("appt-7") == [
        w for w in waiting if w.channel != "sms"
    ]
    assert (await gateway.queue.depths()).scheduled == len(waiting) - 1
    assert stop.account == "atelier-elodie" or stop.account is None
    assert stop.reason == (
        "answered 'Stop'; 1 waiting text(s) dropped, 0 queued text(s) to be suppressed"
    )
    dropped = [e for e in await history(redis) if e["status"] == "dropped"]
    assert [n["channel"] for n in dropped[0]["notifications"]] == ["sms"]
    await run_until(gateway, clock, START)
    assert gateway.texts() == []

    # A text made before the STOP (a job on the queue) is stopped when it is sent.
    await gateway.run(sms_job("s1", to="06 12 34 56 78", template="reminder", context=_context()))
    assert gateway.texts() == []
    assert sms_events(await gateway.events())[-1][0::2] == (
        "suppressed",
        "the number answered STOP",
    )

    start = await inbox(gateway).incoming(IncomingText("+33612345678", "START"))
    assert start is not None and start.status == "opted_in"
    await gateway.run(
        sms_job("s2", to="+33 6 12 34 56 78", template="reminder", context=_context())
    )
    assert [t["to"] for t in gateway.texts()] == ["+33612345678"]
    statuses = [e["status"] for e in await gateway.events() if e["kind"] == "sms.incoming"]
    assert statuses == ["opted_out", "opted_in"]


async def test_any_other_text_gets_one_answer_per_interval(gateway: Gateway) -> None:
    await gateway.run(sms_job("s3", to="0612345678", template="reminder", context=_context()))
    for _ in range(3):
        assert await inbox(gateway).incoming(IncomingText("+33612345678", "Merci !")) is None
    answers = gateway.texts()[1:]
    assert [a["text"] for a in answers] == [
        "Ce numéro ne lit pas les réponses. Pour toute question, contactez"
        " L'Atelier d'Élodie & Fils."
    ]
    assert answers[0]["to"] == "+33612345678"


async def test_jobs_that_cannot_be_texted_fail_alone_and_are_not_retried(gateway: Gateway) -> None:
    await gateway.run(sms_job("s4", to="12", text="Bonjour"))
    await gateway.run(sms_job("s5", to="0612345678", template="confirmation", context=_context()))
    await gateway.run(sms_job("s6", to="0612345678", text="x" * 1600))
    events = sms_events(await gateway.events())
    assert [status for status, _, _ in events] == ["failed", "failed", "sent"]
    assert "too short" in events[0][2] or "not" in events[0][2]
    assert events[1][2] == "there is no text message for 'confirmation' notifications"
    assert gateway.texts()[0]["parts"] == 11  # 1,600 GSM-7 characters: ceil(1600 / 153)
    assert await gateway.queue.redis.xlen("mailgw:dead") == 0


def _context() -> dict[str, Any]:
    return json.loads(
        json.dumps(
            {"appointment": appointment_job("x", "appointment.booked", START)["appointment"]}
        )
    )


async def test_stop_counts_the_queued_texts_it_stops_with_the_waiting_ones(
    gateway: Gateway, clock: FixedClock, redis: Redis
) -> None:
    """The opted_out event counts every text the STOP stops: the reminder waiting in the
    planner, and the `sms.send` jobs already queued to that number however it was written
    (on the stream, or waiting for their send_at), but not those to other numbers or done."""
    await gateway.run(appointment_job("b4", "appointment.booked", START))
    await gateway.queue.ensure_group()
    await gateway.run(sms_job("done-before", to="0612345678", text="Déjà envoyé"))
    later = (NOW + timedelta(hours=5)).isoformat()
    forms = ["06 12 34 56 78", "+33 6 12 34 56 78", "0612345678", "+33612345678"]
    jobs = [
        sms_job(
            f"q{n}", to=forms[n % 4], text=f"Texte {n}", **({"send_at": later} if n % 2 else {})
        )
        for n in range(50)
    ]
    jobs.append(sms_job("other", to="06 98 76 54 32", text="Pour un autre"))
    for job in jobs:
        await gateway.queue.enqueue(parse_job(json.dumps(job)))
    # A job done already, put on the stream again as any Redis client could: a duplicate,
    # skipped when its turn comes, not suppressed.
    again = sms_job("done-before", to="0612345678", text="Un doublon")
    await redis.xadd("mailgw:jobs", {"job": json.dumps(again)})

    stop = await inbox(gateway).incoming(IncomingText("+33612345678", "STOP"))
    assert stop is not None
    assert stop.reason == (
        "answered 'STOP'; 1 waiting text(s) dropped, 50 queued text(s) to be suppressed"
    )
    await run_until(gateway, clock, NOW + timedelta(hours=6))
    statuses = [s for s, to, _ in sms_events(await gateway.events()) if to == "+33612345678"]
    assert statuses.count("suppressed") == 50
