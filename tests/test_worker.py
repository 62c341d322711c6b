"""The worker against a real Redis: outcomes, retries, dead letters, shutdown."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from gateway.dead_letters import NOT_REPLAYABLE
from gateway.errors import PermanentFailure, TemporaryFailure
from gateway.events import Event
from gateway.handlers import builtin_handlers
from gateway.jobs import KNOWN_KINDS, Job
from gateway.settings import Settings
from gateway.worker import Worker
from tests.conftest import FixedClock
from tests.support import ACCOUNT, make_worker
from tests.test_queue import booked, email


class Recorder:
    """A handler that records its jobs and fails as told."""

    def __init__(self, failures: list[Exception] | None = None, delay: float = 0.0) -> None:
        self.jobs: list[str] = []
        self.failures = failures or []
        self.delay = delay

    async def handle(self, job: Job, attempt: int) -> list[Event]:
        self.jobs.append(job.id)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures:
            raise self.failures.pop(0)
        return [Event(job.id, job.kind, "sent", "t", channel="email", recipient="zoe@example.com")]


def every_kind(handler: Any) -> dict[str, Any]:
    return {kind: handler for kind in KNOWN_KINDS}


async def drain(worker: Worker) -> None:
    """Process what is on the stream now, like a runner that stops when its queue is empty."""
    while deliveries := await worker.queue.read(worker.consumer, 100, 10):
        for delivery in deliveries:
            await worker.process(delivery)


async def xadd(redis: Redis, value: Any) -> None:
    await redis.xadd("mailgw:jobs", {"job": value if isinstance(value, str) else json.dumps(value)})


async def dead_reasons(worker: Worker) -> list[str]:
    return [d.reason for d in await worker.queue.dead_letters.read()]


async def statuses(worker: Worker) -> list[tuple[str, str]]:
    return [
        (e["job"], e["status"])
        for e in (json.loads(raw) for _, raw in await worker.queue.events("0", 1000))
    ]


async def test_malformed_entries_go_to_dead_letters_and_the_worker_goes_on(
    redis: Redis, clock: FixedClock
) -> None:
    recorder = Recorder()
    worker = make_worker(redis, clock, every_kind(recorder))
    await worker.queue.ensure_group()
    await xadd(redis, "{not json")
    await redis.xadd("mailgw:jobs", {"payload": "x"})
    await xadd(redis, {**booked("a"), "kind": "appointment.bookd"})
    bad = booked("b")
    del bad["appointment"]["start"]
    await xadd(redis, bad)
    await xadd(redis, {**booked("c"), "account": "nobody"})
    await xadd(redis, booked("good"))
    await drain(worker)

    reasons = await dead_reasons(worker)
    assert reasons[0].startswith("not JSON: ")
    assert reasons[1] == """entry has no 'job' field (it has: {"payload": "x"})"""
    assert reasons[2].startswith("unknown kind 'appointment.bookd' (known: appointment.booked,")
    assert reasons[3] == "missing field 'appointment.start'"
    assert reasons[4] == "unknown account 'nobody'"
    assert recorder.jobs == ["good"]
    assert (await statuses(worker))[-1] == ("good", "sent")
    depths = await worker.queue.depths()
    assert (depths.ready, depths.in_flight, depths.dead_letters) == (0, 0, 5)


async def test_entries_that_are_not_utf8_are_dead_lettered_escaped(
    redis: Redis, redis_url: str, clock: FixedClock
) -> None:
    recorder = Recorder()
    worker = make_worker(redis, clock, every_kind(recorder))
    await worker.queue.ensure_group()
    await redis.xadd("mailgw:jobs", {"job": b'{"v":1,"id":"\xff\xfe"}'})
    await redis.xadd("mailgw:jobs", {b"\xc3(": b"x"})
    # Fields beside a valid job are ignored, whatever their bytes.
    await redis.xadd("mailgw:jobs", {"job": json.dumps(booked("a")), "note": b"\xfe\x00"})
    await xadd(redis, booked("good"))
    await drain(worker)

    assert recorder.jobs == ["a", "good"]
    letters = await worker.queue.dead_letters.read()
    assert [(d.reason, d.job) for d in letters] == [
        ("field 'job' is not UTF-8 text (byte 13)", r'{"job": "{\"v\":1,\"id\":\"\xff\xfe\"}"}'),
        ('entry has no \'job\' field (it has: {"\\xc3(": "x"})', r'{"\xc3(": "x"}'),
    ]
    # What was recorded is UTF-8 through and through: a strict reader reads it all.
    strict = SyncRedis.from_url(redis_url, decode_responses=True)
    try:
        for stream in ("mailgw:events", "mailgw:dead"):
            assert strict.xrange(stream)
    finally:
        strict.close()
    replayed = await worker.queue.dead_letters.replay([d.entry_id for d in letters])
    assert set(replayed.values()) == {NOT_REPLAYABLE}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"v":1,"id":"deep","kind":"email.send","context":' + "[" * 100_000, "not JSON: "),
        ('{"v":1,"id":"deep","kind":"email.send","context":{"a":' + "[" * 100_000 + "]" * 100_000
         + "}}", "not JSON: nested too deeply"),
        ('{"v":' + "9" * 5000 + ',"id":"big"}', "not JSON: a number too long"),
        ('{"v":1,"id":"\\ud800","kind":"account.delete","account":"salon"}', "not JSON: "),
        ('"' + "x" * 2_000_000 + '"', "not a JSON object"),
    ],
)  # fmt: skip
async def test_entries_no_parser_can_read_are_dead_lettered_at_once(
    redis: Redis, clock: FixedClock, raw: str, reason: str
) -> None:
    recorder = Recorder()
    worker = make_worker(redis, clock, every_kind(recorder))
    await worker.queue.ensure_group()
    await xadd(redis, raw)
    await xadd(redis, booked("good"))
    await drain(worker)
    [letter] = await worker.queue.dead_letters.read()
    assert letter.reason.startswith(reason)
    assert letter.job == raw
    assert recorder.jobs == ["good"]
    depths = await worker.queue.depths()
    assert (depths.ready, depths.in_flight, depths.dead_letters) == (0, 0, 1)
    assert [s for _, s in await statuses(worker)] == ["failed", "sent"]


async def test_temporary_failures_back_off_then_dead_letter(
    redis: Redis, clock: FixedClock
) -> None:
    recorder = Recorder([TemporaryFailure("451 4.3.0 busy")] * 10)
    worker = make_worker(redis, clock, every_kind(recorder), max_attempts=5)
    await worker.queue.ensure_group()
    await xadd(redis, booked("j"))
    delays = []
    for _ in range(4):
        await drain(worker)
        [(_, due)] = await redis.zrange("mailgw:retry", 0, -1, withscores=True)
        delays.append(due / 1000 - clock.now())
        clock.current = due / 1000
        assert await worker.queue.promote_due(10) == 1
    await drain(worker)
    assert delays == [10.0, 20.0, 40.0, 80.0]
    assert await dead_reasons(worker) == ["gave up after 5 attempts: 451 4.3.0 busy"]
    assert [s for _, s in await statuses(worker)] == ["deferred"] * 4 + ["failed"]
    assert len(recorder.jobs) == 5


@pytest.mark.parametrize(("retry_after", "delay"), [(0.0, 1.0), (-5.0, 1.0), (1e12, 80.0)])
async def test_a_retry_time_given_by_the_handler_is_bounded_and_so_are_its_attempts(
    redis: Redis, clock: FixedClock, retry_after: float, delay: float
) -> None:
    # A provider answering 429 with the same Retry-After for ever.
    recorder = Recorder([TemporaryFailure("429", retry_after=retry_after)] * 20)
    worker = make_worker(redis, clock, every_kind(recorder), max_attempts=4)
    await worker.queue.ensure_group()
    await xadd(redis, booked("j"))
    delays = []
    for _ in range(3):
        await drain(worker)
        [(_, due)] = await redis.zrange("mailgw:retry", 0, -1, withscores=True)
        delays.append(due / 1000 - clock.now())
        clock.current = due / 1000
        assert await worker.queue.promote_due(10) == 1
    await drain(worker)
    assert delays == [delay] * 3
    assert await dead_reasons(worker) == ["gave up after 4 attempts: 429"]
    assert len(recorder.jobs) == 4


async def test_a_schedule_with_its_own_end_runs_past_max_attempts_until_that_end(
    redis: Redis, clock: FixedClock
) -> None:
    end = clock.now() + 100
    recorder = Recorder([TemporaryFailure("451", retry_after=30, give_up_at=end)] * 20)
    worker = make_worker(redis, clock, every_kind(recorder), max_attempts=2)
    await worker.queue.ensure_group()
    await xadd(redis, booked("j"))
    for _ in range(3):
        await drain(worker)
        [(_, due)] = await redis.zrange("mailgw:retry", 0, -1, withscores=True)
        clock.current = due / 1000
        assert await worker.queue.promote_due(10) == 1
    await drain(worker)  # at end - 10: another 30 s would pass the end
    assert await dead_reasons(worker) == ["gave up after 4 attempts: 451"]
    assert len(recorder.jobs) == 4


async def test_permanent_failure_is_dead_lettered_at_once(redis: Redis, clock: FixedClock) -> None:
    worker = make_worker(redis, clock, every_kind(Recorder([PermanentFailure("550 no")])))
    await worker.queue.ensure_group()
    await xadd(redis, booked("j"))
    await drain(worker)
    assert await dead_reasons(worker) == ["550 no"]
    [letter] = await worker.queue.dead_letters.read()
    assert (letter.job_id, letter.attempts) == ("j", 1)


async def test_unexpected_exception_is_retried(redis: Redis, clock: FixedClock) -> None:
    recorder = Recorder([KeyError("boom")])
    worker = make_worker(redis, clock, every_kind(recorder))
    await worker.queue.ensure_group()
    await xadd(redis, booked("j"))
    await drain(worker)
    assert (await worker.queue.depths()).retrying == 1
    clock.advance(10)
    await worker.queue.promote_due(10)
    await drain(worker)
    assert [s for _, s in await statuses(worker)] == ["deferred", "sent"]


async def test_builtin_handlers_keep_accounts_and_route_kinds(
    redis: Redis, clock: FixedClock
) -> None:
    worker = make_worker(redis, clock, {})
    recorder = Recorder()
    worker.handlers = builtin_handlers(
        worker.directory, Settings, clock, email=recorder, sms=recorder, planner=recorder
    )
    await worker.queue.ensure_group()
    data = {k: v for k, v in ACCOUNT.items() if k != "id"}
    await xadd(
        redis, {"v": 1, "id": "u1", "kind": "account.upsert", "account": "new", "data": data}
    )
    await xadd(redis, {**email("e1"), "account": "new"})
    await xadd(
        redis,
        {
            "v": 1,
            "id": "s1",
            "kind": "sms.send",
            "account": "new",
            "to": "+33612345678",
            "text": "Hi",
        },
    )
    await xadd(
        redis,
        {
            "v": 1,
            "id": "u2",
            "kind": "account.upsert",
            "account": "bad",
            "data": {**data, "plan": "x"},
        },
    )
    await xadd(
        redis,
        {
            "v": 1,
            "id": "u3",
            "kind": "account.upsert",
            "account": "tab",
            "data": {**data, "business_name": "Müller\tGmbH"},
        },
    )
    await drain(worker)
    stored = await worker.directory.get("new")
    assert stored is not None and stored.business_name == "L'Atelier d'Élodie & Fils"
    reasons = await dead_reasons(worker)
    assert recorder.jobs == ["e1", "s1"]
    assert reasons[0].startswith("invalid account: job u2:plan: must be one of")
    assert reasons[1] == (
        "invalid account: job u3:business_name: must be on one line: "
        "control characters are not allowed (TAB)"
    )
    assert await worker.directory.get("tab") is None
    assert (await statuses(worker))[0] == ("u1", "applied")

    await xadd(redis, {"v": 1, "id": "d1", "kind": "account.delete", "account": "new"})
    await drain(worker)
    assert await worker.directory.get("new") is None


async def test_warm_stop_finishes_the_job_in_hand(redis: Redis, clock: FixedClock) -> None:
    recorder = Recorder(delay=0.5)
    worker = make_worker(redis, clock, every_kind(recorder))
    await worker.queue.ensure_group()
    await xadd(redis, booked("slow"))
    running = asyncio.create_task(worker.run())
    while not recorder.jobs:
        await asyncio.sleep(0.01)
    worker.stop()
    await asyncio.wait_for(running, 5)
    assert await statuses(worker) == [("slow", "sent")]
    assert (await worker.queue.depths()).in_flight == 0
    # Its consumer name leaves the group with it.
    assert await redis.xinfo_consumers("mailgw:jobs", "workers") == []


async def test_cold_stop_leaves_the_job_for_reclaim(redis: Redis, clock: FixedClock) -> None:
    recorder = Recorder(delay=30)
    worker = make_worker(redis, clock, every_kind(recorder))
    await worker.queue.ensure_group()
    await xadd(redis, booked("slow"))
    running = asyncio.create_task(worker.run())
    while not recorder.jobs:
        await asyncio.sleep(0.01)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    depths = await worker.queue.depths()
    assert (depths.in_flight, depths.dead_letters) == (1, 0)
    assert await statuses(worker) == []
    assert not await worker.queue.forget_consumer(worker.consumer)


async def test_job_that_keeps_killing_workers_is_set_aside(redis: Redis, clock: FixedClock) -> None:
    from gateway.queue import QueueOptions

    options = QueueOptions(visibility_timeout_ms=1, max_deliveries=2)
    recorder = Recorder()
    worker = make_worker(redis, clock, every_kind(recorder), queue_options=options)
    await worker.queue.ensure_group()
    await xadd(redis, booked("poison"))
    await worker.queue.read("died-1", 10, 10)
    for dead in ("died-2", "died-3"):
        await asyncio.sleep(0.01)
        assert await worker.queue.reclaim(dead, 10)
    await asyncio.sleep(0.01)
    [delivery] = await worker.queue.reclaim("w1", 10)
    assert delivery.deliveries == 4
    await worker.process(delivery)
    assert recorder.jobs == []
    [reason] = await dead_reasons(worker)
    assert reason.startswith("delivered 4 times and never finished")


async def test_handler_schedule_and_reached_outcomes_travel_with_the_retry(
    redis: Redis, clock: FixedClock
) -> None:
    sent = Event("j", "email.send", "sent", "t", channel="email", recipient="a@example.com")
    failure = TemporaryFailure(
        "451 4.4.1 later", retry_after=300.0, events=[sent], give_up_at=clock.now() + 86400
    )
    worker = make_worker(redis, clock, every_kind(Recorder([failure])), max_attempts=1)
    await worker.queue.ensure_group()
    await xadd(redis, booked("j"))
    await drain(worker)
    # Its own schedule, with its own end instead of max_attempts.
    [(_, due)] = await redis.zrange("mailgw:retry", 0, -1, withscores=True)
    assert due / 1000 - clock.now() == 300.0
    assert [s for _, s in await statuses(worker)] == ["sent", "deferred"]


async def test_jobs_read_together_share_their_script_calls(redis: Redis, clock: FixedClock) -> None:
    recorder = Recorder()
    worker = make_worker(redis, clock, every_kind(recorder), concurrency=32)
    await worker.queue.ensure_group()
    for i in range(20):
        await xadd(redis, booked(f"j{i}"))
    await redis.config_resetstat()
    running = asyncio.create_task(worker.run())
    while len(await statuses(worker)) < 20:
        await asyncio.sleep(0.01)
    worker.stop()
    await asyncio.wait_for(running, 5)
    assert sorted(recorder.jobs) == sorted(f"j{i}" for i in range(20))
    assert (await worker.queue.depths()).in_flight == 0
    # Read in one go: one script call claims them all, one completes them all (and one
    # lets the stopping worker's name go).
    stats: Any = await redis.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 3


async def test_an_upsert_whose_sms_text_can_never_render_is_dead_lettered(
    redis: Redis, clock: FixedClock
) -> None:
    recorder = Recorder()
    worker = make_worker(redis, clock, every_kind(recorder))
    worker.handlers = builtin_handlers(
        worker.directory, Settings, clock, email=recorder, sms=recorder, planner=recorder
    )
    await worker.queue.ensure_group()
    reminder = {"enabled": True, "text": "Rappel {{ date|shout }} chez {{ business }}"}
    data = {**{k: v for k, v in ACCOUNT.items() if k != "id"}, "verified": True}
    await xadd(
        redis,
        {
            "v": 1,
            "id": "u1",
            "kind": "account.upsert",
            "account": "shouty",
            "data": {**data, "notifications": {"sms_reminder": reminder}},
        },
    )
    await drain(worker)
    assert await dead_reasons(worker) == [
        "invalid account: job u1:notifications.sms_reminder.text: line 1: no filter named 'shout'"
    ]
    assert await worker.directory.get("shouty") is None


async def test_a_backlog_read_in_one_go_starts_nearest_deadline_first(
    redis: Redis, clock: FixedClock
) -> None:
    # Enqueued while no worker ran: farthest deadline first, one without any, one whose
    # deadline is given with an offset (09:30+01:00 is 08:30 UTC, the nearest).
    recorder = Recorder()
    worker = make_worker(redis, clock, every_kind(recorder), concurrency=8)
    await worker.queue.ensure_group()
    backlog = {
        "far": "2030-01-01T12:00:00Z",
        "none": None,
        "mid": "2030-01-01T10:00:00Z",
        "offset": "2030-01-01T09:30:00+01:00",
        "near": "2030-01-01T09:00:00Z",
    }
    for job_id, expires_at in backlog.items():
        extra = {} if expires_at is None else {"expires_at": expires_at}
        await xadd(redis, email(job_id, **extra))
    running = asyncio.create_task(worker.run())
    while len(await statuses(worker)) < len(backlog):
        await asyncio.sleep(0.01)
    worker.stop()
    await asyncio.wait_for(running, 5)
    assert recorder.jobs == ["offset", "near", "mid", "far", "none"]
