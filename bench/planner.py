"""Planner scale: appointments planned per second, due notifications dispatched per second
(waiting -> jobs stream), and Redis memory per pending notification, beside a reference run
in the same command.

    python bench/planner.py [--appointments 20000] [--rounds 5] [--concurrency 200]

Each appointment of the example French account (3 e-mail reminders, an SMS reminder,
2 follow-ups) is booked ten days ahead, so all but the confirmation wait in Redis.
One process plans, with `--concurrency` jobs in hand as a worker keeps them (each
slot takes the next job when its own is done, and gives the planner where the job first
arrived, as a worker's claim gives it): the planning jobs in hand at one moment leave for
Redis together, as one script call.

The reference is Redis alone: the same writes (each appointment's data with its waiting
entries, order key and context, its place in the notifications set, the client's booking,
the SMS number's waiting set, the waiting count, the confirmation's job and its state), as
plain commands made before its clock starts and sent down one connection as fast as Redis
takes them, to a Redis server of its own. No rules, no scripts, nothing read: the most this
machine's Redis does of that work at that moment, which no planner storing the same state
in it can pass. The two take turns, `--rounds` times, so that a change of the machine's speed (it
is shared) weighs on both. Dispatching is compared in the same way with Redis taking the
same jobs and their states, one XADD and one SET each.

Targets (issue 4): 20,000 plans/s, 20,000 dispatches/s, 512 bytes per pending one.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import hiredis  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from gateway.config import load_config  # noqa: E402
from gateway.directory import AccountDirectory  # noqa: E402
from gateway.handlers import ARRIVAL  # noqa: E402
from gateway.jobs import AppointmentJob, parse_job  # noqa: E402
from gateway.keys import Keys  # noqa: E402
from gateway.notifications import (  # noqa: E402
    ENTRIES_SEP,
    SEP,
    appointment_data,
    entry_middle,
    notification_job,
)
from gateway.ordering import order_key  # noqa: E402
from gateway.planner import Planner, appointment_context  # noqa: E402
from gateway.queue import JobQueue, QueueOptions  # noqa: E402
from gateway.redis_conn import connect  # noqa: E402
from tests.conftest import FixedClock  # noqa: E402
from tests.redis_server import start_redis  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ARRIVED_MS = int(NOW.timestamp() * 1000)
ACCOUNT = "atelier-elodie"
PHONE = "+33612345678"
# What the example account leaves waiting: (kind, index, channel, only if not rebooked,
# seconds from the start), the first due first.
WAITING = [
    ("reminder", 0, "email", 0, -2 * 86400),
    ("reminder", 1, "email", 0, -86400),
    ("reminder", 0, "sms", 0, -3 * 3600),
    ("reminder", 2, "email", 0, -2 * 3600),
    ("follow_up", 0, "email", 0, 86400),
    ("follow_up", 1, "email", 1, 30 * 86400),
]
HISTORY_TTL = 400 * 86400
STATE_TTL = QueueOptions().state_ttl
# The rates are floors, the memory a ceiling.
TARGETS = {"plans": 20_000, "dispatches": 20_000, "bytes": 512}


def booking(index: int) -> AppointmentJob:
    start = NOW + timedelta(days=10, minutes=index % 600)
    job = parse_job(
        json.dumps(
            {
                "v": 1,
                "id": f"book-{index}",
                "kind": "appointment.booked",
                "account": ACCOUNT,
                "appointment": {
                    "id": f"appt-{index}",
                    "calendar": "101",
                    "type": "2001",
                    "start": start.isoformat(),
                    "end": (start + timedelta(minutes=45)).isoformat(),
                    "timezone": "Europe/Paris",
                    "clients": [
                        {
                            "name": "Zoé Martin",
                            "emails": [f"client{index}@example.com"],
                            "phone": PHONE,
                        }
                    ],
                },
            }
        )
    )
    assert isinstance(job, AppointmentJob)
    return job


# A booking job, with where it first reached the gateway (the stream entry id a worker's
# claim gives back): the bench's bookings arrive in order.
Booking = tuple[AppointmentJob, str]


def resp(*args: str | bytes | int) -> bytes:
    """One command in Redis's protocol, as a client sends it."""
    parts = [arg if isinstance(arg, bytes) else str(arg).encode() for arg in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def entries(job: AppointmentJob) -> list[str]:
    """The appointment's waiting entries, as the planner writes them (gateway/notifications.py)."""
    start_ms = int(job.appointment.start.timestamp() * 1000)
    address = job.appointment.clients[0].emails[0]
    return [
        f"{start_ms + offset * 1000}{entry_middle(kind, index, channel, flag)}"
        + (PHONE if channel == "sms" else address)
        for kind, index, channel, flag, offset in WAITING
    ]


def job_json(
    job: AppointmentJob, kind: str, index: int, channel: str, to: str, flag: bool = False
) -> tuple[str, bytes]:
    """A notification's id and job, as the planner makes them."""
    return notification_job(job.id, ACCOUNT, job.appointment.id,
                            appointment_context(job.appointment), kind, index, channel, to,
                            flag)  # fmt: skip


class Reference:
    """The planning's and the dispatching's writes, sent as a client that spends nothing
    would send them (see the module's text)."""

    def __init__(self, port: int, keys: Keys) -> None:
        self.port = port
        self.keys = keys

    def planning(self, job: AppointmentJob, arrival: str) -> list[bytes]:
        """The commands that write what planning `job` writes."""
        keys, appointment = self.keys, job.appointment
        address = appointment.clients[0].emails[0]
        start_ms = int(appointment.start.timestamp() * 1000)
        data = keys.appointment_data(appointment.id)
        booking, texts = keys.bookings(ACCOUNT, address), keys.sms_waiting(PHONE)
        confirmation, confirmation_job = job_json(job, "confirmation", 0, "email", address)
        pending = ENTRIES_SEP.join(entries(job))
        order = order_key(job.kind, appointment.sequence, arrival)
        value = appointment_data(
            ACCOUNT, job.id, pending, confirmation, order, appointment_context(appointment)
        )
        return [
            resp("SET", data, value, "EX", HISTORY_TTL),
            resp("ZADD", keys.notifications, start_ms + WAITING[0][4] * 1000, appointment.id),
            resp("ZADD", booking, start_ms // 1000, appointment.id),
            resp("EXPIRE", booking, HISTORY_TTL),
            resp("SADD", texts, appointment.id),
            resp("EXPIRE", texts, HISTORY_TTL),
            resp("INCRBY", keys.waiting_count, len(WAITING)),
            resp("XADD", keys.jobs, "*", "job", confirmation_job),
            resp("SET", keys.job_state(confirmation), "q", "EX", STATE_TTL),
        ]  # fmt: skip

    def dispatching(self, job: AppointmentJob) -> list[bytes]:
        """The commands that write what dispatching the appointment's waiting notifications
        writes: each one's job and its state."""
        commands = []
        for kind, index, channel, flag, to in (entry.split(SEP)[1:] for entry in entries(job)):
            job_id, made = job_json(job, kind, int(index), channel, to, flag == "1")
            commands.append(resp("XADD", self.keys.jobs, "*", "job", made))
            commands.append(resp("SET", self.keys.job_state(job_id), "q", "EX", STATE_TTL))
        return commands

    async def send(self, commands: list[bytes]) -> None:
        """Send the commands as fast as Redis reads them, and wait for every reply."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        replies = hiredis.Reader()

        async def read() -> None:
            left = len(commands)
            while left:
                data = await reader.read(1 << 16)
                if not data:
                    raise ConnectionError("Redis closed the connection")
                replies.feed(data)
                while (reply := replies.gets()) is not False:
                    if isinstance(reply, hiredis.ReplyError):
                        raise reply
                    left -= 1

        reading = asyncio.create_task(read())
        for first in range(0, len(commands), 1000):
            writer.write(b"".join(commands[first : first + 1000]))
            await writer.drain()
        await reading
        writer.close()
        await writer.wait_closed()


@dataclass(slots=True)
class Side:
    """What one side spent: wall time, its own process's CPU time and its Redis's."""

    seconds: float = 0.0
    own_cpu: float = 0.0
    redis_cpu: float = 0.0
    rounds: list[float] = field(default_factory=list)

    async def measure(self, redis: Redis, count: int, work: Awaitable[object]) -> None:
        redis_before, own_before = await cpu_seconds(redis), time.process_time()
        start = time.perf_counter()
        await work
        seconds = time.perf_counter() - start
        self.own_cpu += time.process_time() - own_before
        self.redis_cpu += await cpu_seconds(redis) - redis_before
        self.seconds += seconds
        self.rounds.append(count / seconds)


@dataclass(frozen=True, slots=True)
class Figures:
    pending: int
    bytes_per_pending: float
    planning: Side
    reference_planning: Side
    dispatching: Side
    reference_dispatching: Side


def chunks(items: list[Booking], rounds: int) -> Iterator[list[Booking]]:
    size = -(-len(items) // rounds)
    for first in range(0, len(items), size):
        yield items[first : first + size]


async def planner_on(redis: Redis, clock: FixedClock) -> tuple[Planner, JobQueue]:
    """The planner and its queue, as a worker has them, for the example accounts."""
    config = load_config(ROOT / "config" / "mailgw.toml")
    keys = Keys()
    queue = JobQueue(redis, QueueOptions(), clock)
    directory = AccountDirectory(
        redis, keys, config.accounts, cache_size=10, cache_ttl=3600, timer=clock.now
    )
    await queue.ensure_group()
    return Planner(redis, keys, queue, directory, clock, lambda: HISTORY_TTL), queue


def prepared(appointments: int, first: int = 0) -> list[Booking]:
    """The booking jobs, parsed. They are the bench's, not the planner's (a worker holds a
    few at a time): kept out of the garbage collector's rounds, which would otherwise walk
    millions of them again and again."""
    jobs = [(booking(i), f"{ARRIVED_MS}-{i}") for i in range(first, first + appointments)]
    gc.collect()
    gc.freeze()
    return jobs


async def plan(planner: Planner, jobs: list[Booking], concurrency: int) -> None:
    """Plan the jobs with `concurrency` in hand, each slot taking the next when it is done."""
    waiting = iter(jobs)

    async def slot() -> None:
        for job, arrival in waiting:
            ARRIVAL.set(arrival)  # as a worker does for the job it runs
            await planner.handle(job, 1)

    await asyncio.gather(*(slot() for _ in range(concurrency)))


async def measure(ports: list[int], appointments: int, rounds: int, concurrency: int) -> Figures:
    redis, reference_redis = (
        connect(f"redis://127.0.0.1:{port}/0", max_connections=concurrency + 8) for port in ports
    )
    clock = FixedClock(NOW.timestamp())
    planner, queue = await planner_on(redis, clock)
    keys = queue.keys
    reference = Reference(ports[1], keys)
    jobs = prepared(appointments)
    before = (await redis.info("memory"))["used_memory"]

    planning, reference_planning = Side(), Side()
    for chunk in chunks(jobs, rounds):
        await planning.measure(redis, len(chunk), plan(planner, chunk, concurrency))
        # Made before its clock starts, as the planner's jobs are.
        commands = [command for job in chunk for command in reference.planning(*job)]
        await reference_planning.measure(reference_redis, len(chunk), reference.send(commands))
        del commands

    pending = int(await redis.get(keys.waiting_count) or 0)
    # The confirmations went out at once (a worker would have taken them from the
    # stream); everything else the planning left counts: the appointments' data,
    # histories and booking records, the confirmations' idempotency records.
    await redis.delete(keys.jobs)
    memory = (await redis.info("memory"))["used_memory"] - before

    clock.current = (NOW + timedelta(days=400)).timestamp()
    dispatching, reference_dispatching = Side(), Side()
    dispatched = 0

    async def promote() -> None:
        nonlocal dispatched
        dispatched = await queue.promote_due(1000)

    await dispatching.measure(redis, pending, promote())
    for chunk in chunks(jobs, rounds):
        commands = [command for job, _ in chunk for command in reference.dispatching(job)]
        await reference_dispatching.measure(
            reference_redis, len(commands) // 2, reference.send(commands)
        )
        del commands
    made = await reference_redis.xlen(keys.jobs) - appointments
    for client in (redis, reference_redis):
        await client.aclose()
    if dispatched != pending or made != pending:
        sys.exit(f"dispatched {dispatched} and {made} notifications of {pending}")
    return Figures(
        pending, memory / pending, planning, reference_planning, dispatching, reference_dispatching
    )


async def cpu_seconds(redis: Redis) -> float:
    """The CPU time the Redis server has used so far."""
    cpu = await redis.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def report(name: str, count: int, side: Side, reference: Side, target: int) -> None:
    rate, reference_rate = count / side.seconds, count / reference.seconds
    print(
        f"{name:<12}{rate:>10,.0f}/s  {rate / reference_rate:5.2f}x the reference"
        f" ({reference_rate:,.0f}/s)  {rate / target:5.2f}x the target {target:,}"
        f" ({'met' if rate >= target else 'missed'})"
    )
    for who, spent in (("", side), ("reference ", reference)):
        rounds = " ".join(f"{r:,.0f}" for r in spent.rounds)
        print(
            f"  {who + 'CPU each:':<20}{spent.own_cpu / count * 1e6:5.1f} µs in Python,"
            f" {spent.redis_cpu / count * 1e6:5.1f} µs in Redis"
            + (f"; rounds: {rounds} /s" if len(spent.rounds) > 1 else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--appointments", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
        servers = [start_redis(Path(directory)) for directory in (first, second)]
        try:
            ports = [port for _, port in servers]
            figures = asyncio.run(measure(ports, args.appointments, args.rounds, args.concurrency))
        finally:
            for server, _ in servers:
                server.terminate()
                server.wait()
    print(
        f"{args.appointments:,} appointments ({figures.pending:,} notifications waiting),"
        f" {args.rounds} rounds taking turns with the reference (Redis alone, same writes)"
    )
    report("plans", args.appointments, figures.planning, figures.reference_planning,
           TARGETS["plans"])  # fmt: skip
    report("dispatches", figures.pending, figures.dispatching, figures.reference_dispatching,
           TARGETS["dispatches"])  # fmt: skip
    memory, ceiling = figures.bytes_per_pending, TARGETS["bytes"]
    met = "met" if memory <= ceiling else "missed"
    print(
        f"{'memory':<12}{memory:>10,.0f} bytes of Redis per waiting notification,"
        f" {memory / ceiling:.2f}x the ceiling {ceiling} ({met})"
    )


if __name__ == "__main__":
    main()
