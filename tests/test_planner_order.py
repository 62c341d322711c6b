"""The events of one appointment take effect in the order the upstream application sent
them, whatever order workers handle them in and however often: through a real Redis, the
real queue and workers, some of them killed mid-job."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from gateway.clock import rfc3339
from gateway.errors import TemporaryFailure
from gateway.events import Event
from gateway.handlers import Handler
from gateway.jobs import KNOWN_KINDS, Job, parse_job
from gateway.planner import Planner
from gateway.queue import Delivery, JobQueue, QueueOptions
from gateway.worker import Worker, WorkerOptions
from tests.conftest import FixedClock
from tests.gateway_harness import Gateway
from tests.test_planner import NOW, appointment_job, arrived, history

BOOKED, MOVED, CANCELLED = "appointment.booked", "appointment.rescheduled", "appointment.cancelled"
RESEND = "appointment.confirmation.resend"
START = NOW + timedelta(days=5)
BOOKINGS = "mailgw:bookings:atelier-elodie:zoe@example.com"
STALE = r"stale: {kind} of \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z already applied \(job {job}\)"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW.timestamp())


async def delivered(gateway: Gateway, *jobs: dict[str, Any]) -> list[Delivery]:
    """The jobs queued in this order, as the upstream application sent them, and read
    from the stream by a worker that has run none of them yet."""
    await gateway.queue.ensure_group()
    for job in jobs:
        await gateway.queue.enqueue(parse_job(json.dumps(job)))
    return await gateway.queue.read("test", 100, 10)


async def xadded(gateway: Gateway, *jobs: dict[str, Any]) -> list[Delivery]:
    """The same, with each job put on the stream by a plain XADD, as any client does."""
    await gateway.queue.ensure_group()
    for job in jobs:
        await gateway.queue.redis.xadd("mailgw:jobs", {"job": json.dumps(job)})
    return await gateway.queue.read("test", 100, 10)


class KilledAfterPlanning:
    """The planner in a worker that is killed once it has planned, before the job is
    recorded done (SIGKILL, as far as Redis can tell: the entry stays pending)."""

    def __init__(self, planner: Planner) -> None:
        self.planner = planner
        self.planned = asyncio.Event()

    async def handle(self, job: Job, attempt: int) -> list[Event]:
        await self.planner.handle(job, attempt)
        self.planned.set()
        await asyncio.Event().wait()
        raise AssertionError("never reached")


async def planned_then_killed(gateway: Gateway, delivery: Delivery) -> None:
    """Run `delivery` in a worker killed right after its planning."""
    doomed = KilledAfterPlanning(gateway.planner)
    handlers: dict[str, Handler] = dict.fromkeys(KNOWN_KINDS, doomed)
    worker = Worker(gateway.queue, gateway.directory, handlers, "doomed", WorkerOptions())
    running = asyncio.create_task(worker.process(delivery))
    await asyncio.wait_for(doomed.planned.wait(), 10)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running


async def reclaimed(gateway: Gateway, clock: FixedClock) -> list[Delivery]:
    """What another worker takes over once the killed one's entries are idle past the
    visibility timeout (1 ms here)."""
    await asyncio.sleep(0.01)
    queue = JobQueue(gateway.queue.redis, QueueOptions(visibility_timeout_ms=1), clock)
    return await queue.reclaim("survivor", 10)


async def sent(gateway: Gateway) -> list[tuple[str, str]]:
    """The notices the client received: (template kind, planning job)."""
    return [
        (e["kind"], e["job"].split("/")[0]) for e in await gateway.events() if e["status"] == "sent"
    ]


async def skipped(redis: Redis, job: str) -> list[str]:
    """Why the job did not take effect, as its appointment's history says."""
    return [
        e["reason"]
        for e in await history(redis)
        if e.get("job") == job and e["status"] == "skipped"
    ]


async def waiting_for(gateway: Gateway) -> list[tuple[str, str, int]]:
    return [
        (w.kind, w.channel, w.due_ms) for w in await gateway.queue.waiting_notifications("appt-7")
    ]


def due_before(start: datetime, hours: float) -> int:
    return int((start - timedelta(hours=hours)).timestamp() * 1000)


async def test_a_booking_handled_after_the_move_changes_nothing(
    gateway: Gateway, redis: Redis
) -> None:
    moved_to = START + timedelta(days=1)
    booking, move = await delivered(
        gateway, appointment_job("b1", BOOKED, START), appointment_job("m1", MOVED, moved_to)
    )
    await gateway.worker.process(move)
    after_move = await waiting_for(gateway)
    assert ("reminder", "email", due_before(moved_to, 2)) in after_move

    await gateway.worker.process(booking)
    await gateway.drain()
    assert await waiting_for(gateway) == after_move
    [reason] = await skipped(redis, "b1")
    assert re.fullmatch(STALE.format(kind=MOVED, job="m1"), reason), reason
    assert await redis.zscore(BOOKINGS, "appt-7") == moved_to.timestamp()
    # No confirmation of the old time after the reschedule notice.
    assert await sent(gateway) == [("reschedule", "m1")]


async def test_a_booking_handled_after_the_cancellation_does_not_bring_it_back(
    gateway: Gateway, redis: Redis
) -> None:
    booking, cancel = await delivered(
        gateway, appointment_job("b1", BOOKED, START), appointment_job("c1", CANCELLED, START)
    )
    await gateway.worker.process(cancel)
    await gateway.worker.process(booking)
    await gateway.drain()
    assert await waiting_for(gateway) == []
    assert await redis.zcard("mailgw:notifications") == 0
    assert await redis.zscore(BOOKINGS, "appt-7") is None
    [reason] = await skipped(redis, "b1")
    assert re.fullmatch(STALE.format(kind=CANCELLED, job="c1"), reason), reason
    assert await sent(gateway) == [("cancellation", "c1")]


async def test_a_move_run_again_after_a_later_move_changes_nothing(
    gateway: Gateway, redis: Redis, clock: FixedClock
) -> None:
    first, second = START + timedelta(days=1), START + timedelta(days=2)
    booking, move, later_move = await delivered(
        gateway,
        appointment_job("b1", BOOKED, START),
        appointment_job("m1", MOVED, first),
        appointment_job("m2", MOVED, second),
    )
    await gateway.worker.process(booking)
    await gateway.drain()
    # The first move's worker is killed after planning it; the second move is handled.
    await planned_then_killed(gateway, move)
    await gateway.worker.process(later_move)
    await gateway.drain()
    after_moves = await waiting_for(gateway)
    assert ("reminder", "email", due_before(second, 2)) in after_moves

    # The first move is taken over and run again.
    [again] = await reclaimed(gateway, clock)
    assert again.entry_id == move.entry_id
    await gateway.worker.process(again)
    await gateway.drain()
    assert await waiting_for(gateway) == after_moves
    [reason] = await skipped(redis, "m1")
    assert re.fullmatch(STALE.format(kind=MOVED, job="m2"), reason), reason
    assert await redis.zscore(BOOKINGS, "appt-7") == second.timestamp()
    # m1's notice was made, then cancelled by m2 before it went out.
    assert await sent(gateway) == [("confirmation", "b1"), ("reschedule", "m2")]


@pytest.mark.parametrize("killed", ["before planning", "after planning"])
async def test_a_booking_taken_over_after_the_move_changes_nothing(
    gateway: Gateway, redis: Redis, clock: FixedClock, killed: str
) -> None:
    moved_to = START + timedelta(days=1)
    # Put on the stream by plain XADDs: the gateway first sees each when it claims it.
    booking, move = await xadded(
        gateway, appointment_job("b1", BOOKED, START), appointment_job("m1", MOVED, moved_to)
    )
    if killed == "after planning":
        await planned_then_killed(gateway, booking)
    # (before planning: the worker holding the booking was killed as it read it)
    await gateway.worker.process(move)
    await gateway.drain()
    after_move = await waiting_for(gateway)

    [again] = await reclaimed(gateway, clock)
    assert again.entry_id == booking.entry_id
    await gateway.worker.process(again)
    await gateway.drain()
    assert await waiting_for(gateway) == after_move
    assert ("reminder", "email", due_before(moved_to, 2)) in after_move
    [reason] = await skipped(redis, "b1")
    assert re.fullmatch(STALE.format(kind=MOVED, job="m1"), reason), reason
    assert await sent(gateway) == [("reschedule", "m1")]


@pytest.mark.parametrize("put", [delivered, xadded])
async def test_a_move_waiting_for_its_send_at_comes_before_a_move_sent_after_it(
    gateway: Gateway, redis: Redis, clock: FixedClock, put: Any
) -> None:
    first, second = START + timedelta(days=1), START + timedelta(days=2)
    await gateway.run(appointment_job("b1", BOOKED, START))
    later = rfc3339(clock.now() + 60)
    for delivery in await put(gateway, appointment_job("m1", MOVED, first) | {"send_at": later}):
        await gateway.worker.process(delivery)  # an XADDed one is parked until its time
    await gateway.run(appointment_job("m2", MOVED, second))
    after_moves = await waiting_for(gateway)

    # Back on the stream as a new entry, later than the second move's: its place is
    # where it first arrived all the same.
    clock.advance(60)
    await gateway.queue.promote_due(100)
    await gateway.drain()
    assert await waiting_for(gateway) == after_moves
    [reason] = await skipped(redis, "m1")
    assert re.fullmatch(STALE.format(kind=MOVED, job="m2"), reason), reason
    assert await sent(gateway) == [("confirmation", "b1"), ("reschedule", "m2")]


class FailsFirst:
    """A handler whose first attempt fails for a while (a relay away), before any planning."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def handle(self, job: Job, attempt: int) -> list[Event]:
        if attempt == 1:
            raise TemporaryFailure("not now")
        return await self.handler.handle(job, attempt)


async def test_a_move_retried_after_a_later_one_changes_nothing(
    gateway: Gateway, redis: Redis, clock: FixedClock
) -> None:
    first, second = START + timedelta(days=1), START + timedelta(days=2)
    await gateway.run(appointment_job("b1", BOOKED, START))
    [move, later_move] = await delivered(
        gateway, appointment_job("m1", MOVED, first), appointment_job("m2", MOVED, second)
    )
    failing = dict.fromkeys(KNOWN_KINDS, FailsFirst(gateway.planner))
    unlucky = Worker(gateway.queue, gateway.directory, failing, "unlucky", WorkerOptions(),
                     jitter=lambda: 0.0)  # fmt: skip
    await unlucky.process(move)
    await gateway.worker.process(later_move)
    await gateway.drain()
    after_moves = await waiting_for(gateway)

    # Back on the stream as a new entry, later than the second move's.
    clock.advance(60)
    assert await gateway.queue.promote_due(100) == 1
    [retried] = await gateway.queue.read("test", 10, 10)
    assert retried.entry_id > later_move.entry_id
    await gateway.worker.process(retried)
    await gateway.drain()
    assert await waiting_for(gateway) == after_moves
    [reason] = await skipped(redis, "m1")
    assert re.fullmatch(STALE.format(kind=MOVED, job="m2"), reason), reason


async def test_the_sequence_orders_events_that_reach_the_stream_out_of_order(
    gateway: Gateway, redis: Redis
) -> None:
    # Sent by two processes of the upstream application: the second move reached the
    # stream first. Its sequence says it is the later one.
    first, second = START + timedelta(days=1), START + timedelta(days=2)
    await gateway.run(appointment_job("b1", BOOKED, START))
    await gateway.run(appointment_job("m2", MOVED, second, sequence=2))
    after_moves = await waiting_for(gateway)
    await gateway.run(appointment_job("m1", MOVED, first, sequence=1))
    assert await waiting_for(gateway) == after_moves
    [reason] = await skipped(redis, "m1")
    assert re.fullmatch(
        r"stale: appointment\.rescheduled of \S+Z already applied \(job m2, sequence 2\)", reason
    ), reason
    # Without a sequence, the order of arrival decides: a third move, sent last, is applied.
    await gateway.run(appointment_job("m3", MOVED, first, sequence=2))
    assert ("reminder", "email", due_before(first, 2)) in await waiting_for(gateway)


async def test_nothing_brings_a_cancelled_appointment_back(gateway: Gateway, redis: Redis) -> None:
    for job in (
        appointment_job("b1", BOOKED, START),
        appointment_job("c1", CANCELLED, START),
        appointment_job("m1", MOVED, START + timedelta(days=1)),
        appointment_job("b2", BOOKED, START + timedelta(days=2)),
        appointment_job("s1", RESEND, START),
    ):
        await gateway.run(job)
    assert await waiting_for(gateway) == []
    assert await redis.zscore(BOOKINGS, "appt-7") is None
    cancelled = r"the appointment is cancelled: appointment\.cancelled of \S+Z already applied"
    for job in ("m1", "b2", "s1"):
        [reason] = await skipped(redis, job)
        assert re.fullmatch(cancelled + r" \(job c1\)", reason), reason
    assert await sent(gateway) == [("confirmation", "b1"), ("cancellation", "c1")]


async def test_a_resend_confirms_the_appointment_as_it_stands(
    gateway: Gateway, redis: Redis
) -> None:
    moved_to = START + timedelta(days=1)
    booking, resend, move = await delivered(
        gateway,
        appointment_job("b1", BOOKED, START),
        appointment_job("s1", RESEND, START),
        appointment_job("m1", MOVED, moved_to),
    )
    for delivery in (booking, move, resend):
        await gateway.worker.process(delivery)
        await gateway.drain()
    # The resend was asked for before the move: it would confirm the old time.
    [reason] = await skipped(redis, "s1")
    assert re.fullmatch(STALE.format(kind=MOVED, job="m1"), reason), reason
    # Asked for after the move, it is sent, with the new time.
    await gateway.run(appointment_job("s2", RESEND, moved_to))
    assert await sent(gateway) == [
        ("confirmation", "b1"),
        ("reschedule", "m1"),
        ("confirmation", "s2"),
    ]


async def what_is_planned(gateway: Gateway, redis: Redis) -> tuple[Any, ...]:
    """Everything a planning leaves of the appointment: its waiting notifications, its place
    in the notifications set, its client's booking, the waiting count, the job and order
    key its plan follows."""
    data = await redis.get("mailgw:apptdata:appt-7") or ""
    parts = data.split("\x1d")
    return (
        await gateway.queue.waiting_notifications("appt-7"),
        await redis.zscore("mailgw:notifications", "appt-7"),
        await redis.zscore(BOOKINGS, "appt-7"),
        int(await redis.get("mailgw:waiting") or 0),
        parts[1] if data else None,
        parts[4] if data else None,
    )


@st.composite
def sent_events(draw: st.DrawFn) -> list[tuple[Job, str]]:
    """One appointment's events as the scheduling service sent them, each with where it
    first reached the gateway: one process (no sequence, arrivals in order) or several
    (a sequence raised at each change, arrivals in any order)."""
    moves = draw(st.integers(0, 3))
    kinds = [BOOKED] + [MOVED] * moves + draw(st.sampled_from([[], [CANCELLED]]))
    several = draw(st.booleans())
    arrivals = list(range(1, len(kinds) + 1))
    if several:
        arrivals = draw(st.permutations(arrivals))
    return [
        (
            parse_job(
                json.dumps(
                    appointment_job(
                        f"e{i}", kind, START + timedelta(days=i), sequence=i if several else 0
                    )
                )
            ),
            f"1800000000000-{arrivals[i]}",
        )
        for i, kind in enumerate(kinds)
    ]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_any_interleaving_and_repetition_leaves_what_the_order_sent_leaves(
    gateway: Gateway, redis: Redis, data: st.DataObject
) -> None:
    sent = data.draw(sent_events())
    handled = data.draw(st.lists(st.sampled_from(sent), min_size=1, max_size=8))
    handled = data.draw(st.permutations(handled + data.draw(st.lists(st.sampled_from(handled)))))
    await redis.flushall()
    for job, arrival in handled:
        await arrived(gateway.planner, job, arrival)
    out_of_order = await what_is_planned(gateway, redis)

    await redis.flushall()
    for job, arrival in sent:
        if (job, arrival) in handled:
            await arrived(gateway.planner, job, arrival)
    assert await what_is_planned(gateway, redis) == out_of_order
