"""The job queue against a real Redis: every move, idempotency, dead letters, events."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway.batching import Script, ScriptBatcher
from gateway.dead_letters import NOT_REPLAYABLE
from gateway.events import Event
from gateway.jobs import parse_job
from gateway.queue import Enqueued, JobQueue, QueueOptions
from tests.conftest import FixedClock

GROUP = "workers"


def booked(job_id: str = "job-1", appointment: str = "appt-1", **extra: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "id": job_id,
        "kind": "appointment.booked",
        "account": "salon",
        "appointment": {
            "id": appointment,
            "calendar": "cal-1",
            "type": "cut",
            "start": "2027-01-12T14:30:00+01:00",
            "end": "2027-01-12T15:00:00+01:00",
            "timezone": "Europe/Paris",
            "clients": [{"name": "Zoé", "emails": ["zoe@example.com"]}],
        },
        **extra,
    }


def email(job_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "id": job_id,
        "kind": "email.send",
        "account": "salon",
        "to": ["zoe@example.com"],
        "subject": "Hello",
        "text": "Hi",
        **extra,
    }


@pytest.fixture
async def queue(redis: Redis, clock: FixedClock) -> JobQueue:
    q = JobQueue(redis, QueueOptions(visibility_timeout_ms=200, max_deliveries=3), clock)
    await q.ensure_group()
    return q


async def events(queue: JobQueue) -> list[dict[str, Any]]:
    return [json.loads(e) for _, e in await queue.events("0", count=1000)]


async def test_enqueue_read_complete_records_and_acknowledges(queue: JobQueue) -> None:
    job = parse_job(json.dumps(booked()))
    assert (await queue.enqueue(job)).queued
    [delivery] = await queue.read("w1", 10, 100)
    assert json.loads(delivery.raw)["id"] == "job-1"
    claim = await queue.claim(job, delivery)
    assert (claim.action, claim.attempts) == ("run", 0)
    depths = await queue.depths()
    assert (depths.ready, depths.in_flight) == (0, 1)

    await queue.complete(job, delivery, [Event("job-1", job.kind, "sent", "now", channel="email")])
    depths = await queue.depths()
    assert (depths.ready, depths.in_flight, depths.dead_letters) == (0, 0, 0)
    assert await queue.redis.xlen(queue.keys.jobs) == 0
    assert [e["status"] for e in await events(queue)] == ["sent"]
    assert await queue.redis.get(queue.keys.job_state("job-1")) == "done"
    assert await queue.redis.ttl(queue.keys.job_state("job-1")) > 0


async def test_same_id_twice_is_done_once(queue: JobQueue) -> None:
    job = parse_job(json.dumps(booked()))
    assert (await queue.enqueue(job)).queued
    again = await queue.enqueue(job)
    assert not again.queued
    assert again.where.startswith("q:")
    assert await queue.redis.xlen(queue.keys.jobs) == 1


async def test_plain_xadd_duplicates_are_skipped_with_an_event(queue: JobQueue) -> None:
    raw = json.dumps(booked())
    await queue.redis.xadd(queue.keys.jobs, {"job": raw})
    await queue.redis.xadd(queue.keys.jobs, {"job": raw})
    first, second = await queue.read("w1", 10, 100)
    job = parse_job(raw)
    assert (await queue.claim(job, first)).action == "run"
    skip = await queue.claim(job, second)
    assert skip.action == "skip"
    [event] = await events(queue)
    assert event["status"] == "skipped"
    assert event["reason"] == "duplicate: a job with this id is already queued"
    await queue.complete(job, first, [])
    # Once done, a third copy is a duplicate too.
    await queue.redis.xadd(queue.keys.jobs, {"job": raw})
    [third] = await queue.read("w1", 10, 100)
    assert (await queue.claim(job, third)).state == "done"
    assert (await queue.depths()).ready == 0


async def test_redelivered_entry_is_still_owned(queue: JobQueue) -> None:
    job = parse_job(json.dumps(booked()))
    await queue.enqueue(job)
    [delivery] = await queue.read("w1", 10, 100)
    assert (await queue.claim(job, delivery)).action == "run"
    assert (await queue.claim(job, delivery)).action == "run"


async def test_send_at_waits_in_the_scheduled_set(queue: JobQueue, clock: FixedClock) -> None:
    job = parse_job(json.dumps(email("later", send_at="2027-01-15T10:00:00Z")))
    clock.current = datetime(2027, 1, 15, 9, 0, tzinfo=UTC).timestamp()
    result = await queue.enqueue(job)
    assert (result.queued, result.where) == (True, "s")
    assert (await queue.depths()).scheduled == 1
    assert await queue.promote_due(100) == 0
    clock.advance(3599)
    assert await queue.promote_due(100) == 0
    clock.advance(1)
    assert await queue.promote_due(100) == 1
    depths = await queue.depths()
    assert (depths.scheduled, depths.ready) == (0, 1)
    [delivery] = await queue.read("w1", 10, 100)
    assert (await queue.claim(job, delivery)).action == "run"


async def test_plain_xadd_with_future_send_at_is_parked(queue: JobQueue, clock: FixedClock) -> None:
    raw = json.dumps(email("later", send_at="2030-01-01T00:00:00Z"))
    await queue.redis.xadd(queue.keys.jobs, {"job": raw})
    [delivery] = await queue.read("w1", 10, 100)
    claim = await queue.claim(parse_job(raw), delivery)
    assert claim.action == "deferred"
    depths = await queue.depths()
    assert (depths.ready, depths.in_flight, depths.scheduled) == (0, 0, 1)


async def test_promotion_moves_large_batches(queue: JobQueue, clock: FixedClock) -> None:
    for i in range(250):
        await queue.enqueue(parse_job(json.dumps(email(f"j{i}", send_at="2030-01-01T00:00:00Z"))))
    clock.current = 1_900_000_000
    assert await queue.promote_due(100) == 250
    assert (await queue.depths()).ready == 250


async def test_retry_parks_the_job_with_its_attempts(queue: JobQueue, clock: FixedClock) -> None:
    job = parse_job(json.dumps(booked()))
    await queue.enqueue(job)
    [delivery] = await queue.read("w1", 10, 100)
    await queue.claim(job, delivery)
    assert await queue.retry(job, delivery, 1, 30.0, "451 try later")
    depths = await queue.depths()
    assert (depths.ready, depths.in_flight, depths.retrying) == (0, 0, 1)
    [event] = await events(queue)
    assert event["status"] == "deferred"
    assert event["reason"] == "attempt 1 failed: 451 try later"

    clock.advance(29)
    assert await queue.promote_due(10) == 0
    clock.advance(1)
    assert await queue.promote_due(10) == 1
    [again] = await queue.read("w1", 10, 100)
    claim = await queue.claim(job, again)
    assert (claim.action, claim.attempts) == ("run", 1)


async def test_dead_letter_keeps_the_job_and_reason(queue: JobQueue) -> None:
    job = parse_job(json.dumps(booked()))
    await queue.enqueue(job)
    [delivery] = await queue.read("w1", 10, 100)
    await queue.claim(job, delivery)
    await queue.dead_letter(delivery, "gave up after 10 attempts: 451", job, 10)
    [letter] = await queue.dead_letters.read()
    assert letter.reason == "gave up after 10 attempts: 451"
    assert letter.job_id == "job-1"
    assert letter.attempts == 10
    assert json.loads(letter.job) == json.loads(delivery.raw)
    assert (await queue.depths()).dead_letters == 1
    assert [e["status"] for e in await events(queue)] == ["failed"]
    assert await queue.redis.get(queue.keys.job_state("job-1")) == "dead"

    replayed = await queue.dead_letters.replay([letter.entry_id])
    assert replayed[letter.entry_id]
    assert (await queue.depths()).dead_letters == 0
    [back] = await queue.read("w1", 10, 100)
    claim = await queue.claim(job, back)
    assert (claim.action, claim.attempts) == ("run", 0)


async def test_malformed_entry_does_not_touch_the_id_state(queue: JobQueue) -> None:
    await queue.redis.xadd(queue.keys.jobs, {"job": '{"v": 1, "id": "x"'})
    [delivery] = await queue.read("w1", 10, 100)
    await queue.dead_letter(delivery, "not JSON")
    [letter] = await queue.dead_letters.read()
    assert letter.job == '{"v": 1, "id": "x"'
    assert letter.job_id is None
    [event] = await events(queue)
    assert event["job"] == f"entry:{delivery.entry_id}"
    assert event["status"] == "failed"
    assert await queue.redis.xlen(queue.keys.jobs) == 0


async def test_cancel_appointment_drops_every_pending_job(
    queue: JobQueue, clock: FixedClock
) -> None:
    later = {"send_at": "2030-01-01T00:00:00Z", "appointment": "appt-1"}
    await queue.enqueue(parse_job(json.dumps(email("r1", **later))))
    await queue.enqueue(parse_job(json.dumps(email("r2", **later))))
    ready = parse_job(json.dumps(email("now", appointment="appt-1")))
    await queue.enqueue(ready)
    # The scheduling service's own job about the appointment is not a pending notification.
    await queue.enqueue(parse_job(json.dumps(booked("upstream", appointment="appt-1"))))
    other = parse_job(json.dumps(email("other", send_at="2030-01-01T00:00:00Z", appointment="x")))
    await queue.enqueue(other)

    cancelled = await queue.cancel_appointment("appt-1")
    assert sorted(cancelled) == ["now", "r1", "r2"]
    assert (await queue.depths()).scheduled == 1
    first, upstream = await queue.read("w1", 10, 100)
    skip = await queue.claim(ready, first)
    assert (skip.action, skip.state) == ("skip", "cancelled")
    assert (await queue.claim(parse_job(upstream.raw), upstream)).action == "run"
    [event] = await events(queue)
    assert event["reason"] == "cancelled before it was done"
    assert await queue.cancel_appointment("appt-1") == []


async def test_a_cancelled_job_s_sends_that_its_stopped_run_made_are_recorded(
    queue: JobQueue,
) -> None:
    job = parse_job(
        json.dumps(email("reminder-1", appointment="appt-1", to=["a@x.example", "b@x.example"]))
    )
    await queue.enqueue(job)
    [delivery] = await queue.read("dead-worker", 10, 100)
    await queue.claim(job, delivery)
    # The relay took the message to a@, then the worker died before recording it; b@ had
    # been recorded (as a retry's reached outcome writes its status).
    await queue.redis.hset(
        queue.keys.delivered("reminder-1"), mapping={"a@x.example": "<t1@d>", "b@x.example": "sent"}
    )
    await queue.cancel_appointment("appt-1")
    await asyncio.sleep(0.25)
    [taken] = await queue.reclaim("w2", 10)
    assert (await queue.claim(job, taken)).action == "skip"
    sent, skipped = await events(queue)
    assert {k: sent[k] for k in ("job", "status", "channel", "recipient", "message_id")} == {
        "job": "reminder-1",
        "status": "sent",
        "channel": "email",
        "recipient": "a@x.example",
        "message_id": "<t1@d>",
    }
    assert sent["reason"] == "sent by a run that stopped before recording it"
    assert (skipped["status"], skipped["reason"]) == ("skipped", "cancelled before it was done")
    assert await queue.redis.hgetall(queue.keys.delivered("reminder-1")) == {
        "a@x.example": "sent",
        "b@x.example": "sent",
    }


async def test_a_dead_lettered_job_s_unrecorded_sends_are_recorded(queue: JobQueue) -> None:
    plain = {k: v for k, v in email("sms-like").items() if k not in ("subject", "text")}
    job = parse_job(json.dumps({**plain, "template": "reminder", "context": {}}))
    await queue.enqueue(job)
    [delivery] = await queue.read("w1", 10, 100)
    await queue.claim(job, delivery)
    await queue.redis.hset(queue.keys.delivered("sms-like"), "zoe@example.com", "<t2@d>")
    await queue.dead_letter(delivery, "delivered 6 times and never finished", job)
    sent, failed = await events(queue)
    assert (sent["status"], sent["kind"], sent["message_id"]) == ("sent", "reminder", "<t2@d>")
    assert failed["status"] == "failed"


async def test_retry_after_cancellation_drops_the_job(queue: JobQueue) -> None:
    job = parse_job(json.dumps(email("job-1", appointment="appt-1")))
    await queue.enqueue(job)
    [delivery] = await queue.read("w1", 10, 100)
    await queue.claim(job, delivery)
    assert await queue.cancel_appointment("appt-1") == ["job-1"]
    assert not await queue.retry(job, delivery, 1, 30.0, "451")
    depths = await queue.depths()
    assert (depths.in_flight, depths.retrying) == (0, 0)
    [event] = await events(queue)
    assert (event["status"], event["reason"]) == ("skipped", "cancelled before it was done")


async def test_reclaim_takes_over_after_the_visibility_timeout(queue: JobQueue) -> None:
    job = parse_job(json.dumps(booked()))
    await queue.enqueue(job)
    [delivery] = await queue.read("dead-worker", 10, 100)
    await queue.claim(job, delivery)
    assert await queue.reclaim("w2", 10) == []
    await asyncio.sleep(0.25)
    [taken] = await queue.reclaim("w2", 10)
    assert taken.entry_id == delivery.entry_id
    assert taken.deliveries == 2
    assert (await queue.claim(job, taken)).action == "run"
    await queue.complete(job, taken, [])
    assert (await queue.depths()).in_flight == 0


async def test_entries_read_but_not_held_are_taken_again_at_once(queue: JobQueue) -> None:
    for job_id in ("held", "orphan"):
        await queue.enqueue(parse_job(json.dumps(booked(job_id, appointment=job_id))))
    # As if the reply of this read had been lost with the connection.
    held, orphan = await queue.read("w1", 10, 100)
    [taken] = await queue.orphans("w1", {held.entry_id}, 10)
    assert (taken.entry_id, taken.raw, taken.deliveries) == (orphan.entry_id, orphan.raw, 2)
    assert await queue.orphans("w2", set(), 10) == []
    assert await queue.orphans("w1", {held.entry_id, orphan.entry_id}, 10) == []


async def test_purge_and_replay_of_missing_letters(queue: JobQueue) -> None:
    for i in range(3):
        await queue.redis.xadd(queue.keys.jobs, {"job": f"garbage {i}"})
    for delivery in await queue.read("w1", 10, 100):
        await queue.dead_letter(delivery, "not JSON")
    letters = await queue.dead_letters.read()
    assert len(letters) == 3
    await queue.redis.xadd(queue.keys.jobs, {"payload": "no job field"})
    [fieldless] = await queue.read("w1", 10, 100)
    await queue.dead_letter(fieldless, "entry has no 'job' field")
    last = (await queue.dead_letters.read())[-1]
    assert json.loads(last.job) == {"payload": "no job field"}
    assert await queue.dead_letters.replay([last.entry_id]) == {last.entry_id: NOT_REPLAYABLE}
    assert await queue.dead_letters.purge([letters[0].entry_id, last.entry_id]) == 2
    assert await queue.dead_letters.replay(["0-1"]) == {"0-1": None}
    assert await queue.dead_letters.purge() == 2
    assert (await queue.depths()).dead_letters == 0


async def test_scripts_are_loaded_again_after_a_script_flush(queue: JobQueue) -> None:
    await queue.enqueue(parse_job(json.dumps(booked("before"))))
    await queue.redis.script_flush()
    results = await asyncio.gather(
        *(queue.enqueue(parse_job(json.dumps(booked(f"after-{i}")))) for i in range(5))
    )
    assert all(r.queued for r in results)
    assert await queue.redis.xlen(queue.keys.jobs) == 6


async def evalsha_calls(redis: Redis) -> int:
    stats: Any = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_calls_made_together_go_as_one_script_call(queue: JobQueue) -> None:
    jobs = [parse_job(json.dumps(booked(f"job-{i}"))) for i in range(3)]
    await queue.redis.config_resetstat()
    results = await asyncio.gather(*(queue.enqueue(job) for job in [*jobs, jobs[1]]))
    assert [r.queued for r in results] == [True, True, True, False]
    assert results[3].where == "q:" + results[1].where  # the duplicate sees the first one
    assert await evalsha_calls(queue.redis) == 1
    assert await queue.redis.xlen(queue.keys.jobs) == 3


async def test_a_call_that_fails_does_not_stop_the_others_made_with_it(queue: JobQueue) -> None:
    await queue.redis.hset(queue.keys.job_state("bad"), "not", "a string")
    ok, bad, other = await asyncio.gather(
        *(queue.enqueue(parse_job(json.dumps(booked(i)))) for i in ("ok", "bad", "other")),
        return_exceptions=True,
    )
    assert isinstance(ok, Enqueued) and ok.queued
    assert isinstance(bad, ResponseError) and "WRONGTYPE" in str(bad)
    assert isinstance(other, Enqueued) and other.queued


async def test_each_call_made_together_gets_its_own_reply(redis: Redis) -> None:
    batcher = ScriptBatcher(redis)
    echo = Script("""
if ARGV[1] == 'nothing' then return end
if ARGV[1] == 'boom' then error('boom') end
if ARGV[1] == 'incr' then return redis.call('INCR', KEYS[1]) end
return {KEYS[1], ARGV[1], tonumber(ARGV[2])}
""")
    await redis.set("text", "abc")
    replies = await asyncio.gather(
        batcher.run(echo, ["k1"], ["one", 1]),
        batcher.run(echo, [], ["nothing"]),
        batcher.run(echo, [], ["boom"]),
        batcher.run(echo, ["text"], ["incr"]),
        batcher.run(echo, ["k2"], ["été\x1f", 2.5]),
        return_exceptions=True,
    )
    assert replies[0] == ["k1", "one", 1]
    assert replies[1] is None
    assert isinstance(replies[2], ResponseError) and "boom" in str(replies[2])
    assert isinstance(replies[3], ResponseError) and "not an integer" in str(replies[3])
    assert replies[4] == ["k2", "été\x1f", 2]  # Lua numbers reply as integers, as alone


async def test_a_batch_finishes_with_what_its_calls_left_to_it(redis: Redis) -> None:
    batcher = ScriptBatcher(redis)
    total = Script(
        "added = added + ARGV[1]\nreturn added",
        helpers="local added = 0",
        finish="redis.call('INCRBY', KEYS[1], added)",
    )
    replies = await asyncio.gather(*(batcher.run(total, ["sum"], [n]) for n in (1, 2, 3)))
    assert replies == [1, 3, 6]
    assert await redis.get("sum") == "6"
    await redis.config_resetstat()
    await redis.hset("hash", "field", "value")
    failed = await asyncio.gather(
        *(batcher.run(total, ["hash"], [n]) for n in (1, 2)), return_exceptions=True
    )
    # The finish failed: no call got what it asked for, and each hears why.
    assert all(isinstance(r, ResponseError) and "WRONGTYPE" in str(r) for r in failed)
    assert await evalsha_calls(redis) == 1
