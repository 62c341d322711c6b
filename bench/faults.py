"""Faults at scale, against real `mailgw run --role outbound` processes and a Redis server
of their own (tests/fault_harness.py), printing what became of every job:

    python bench/faults.py [--jobs 10000] [--kills 10] [--hostile 1000] [--rounds 3]
                           [--relay maildir|smtp-sink] [--only kills|restart|hostile]

- kills: workers SIGKILLed (and started again) at even steps while `--jobs` e-mails go
  out: jobs lost, second copies per 10,000, worker exits;
- restart: Redis SIGKILLed mid-load and started again 2 s later on its port and data:
  jobs lost, second copies, worker exits (must be 0), the time from Redis answering
  again to the next message sent;
- appointments: `--appointments` bookings, a third of them moved and a fifth cancelled,
  interleaved (tests/fault_harness.py), through smtp-sink, with `--kills` worker
  SIGKILLs and one Redis restart: each appointment's messages against its story and its
  history (lost, sends for an old time or after a cancellation, copies and whether they
  are flagged, sends not recorded, notifications left waiting for an old time);
- hostile: `--hostile` entries no parser can read (bytes that are not UTF-8, JSON
  nested 50,000 deep, numbers of 5,000 digits, fields without `job`) among `--jobs`
  valid ones: dead-lettered, delivered, worker exits, and the workers' memory.
Mail goes to a Maildir (which the gateway can ask whether it took a message: a run
interrupted while sending is settled without a second copy), or through Postfix's
smtp-sink, which cannot be asked (SMTP has no way to): a second copy then carries the same
Message-ID, and its `sent` event says the relay may have both ("flagged" below).
Each scenario runs `--rounds` times; figures are per round, then the median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from outbound.email_handler import SENT_AGAIN  # noqa: E402
from tests.fault_harness import (  # noqa: E402
    AppointmentFindings,
    GatewayProcess,
    RedisProcess,
    SmtpSink,
    appointment_stories,
    check_appointments,
    email_job,
    enqueue,
    histories,
    interleaved,
    maildir_recipients,
    relayed,
    settled,
    statuses,
    wait_for,
    waiting_dues,
    write_config,
)

WORKERS = 2
HOSTILE = [
    {"job": b'{"v":1,"id":"\xff\xfe"}'},
    {b"\xc3(": b"x"},
    {"job": '{"v":1,"context":' + "[" * 50_000},
    {"job": '{"v":' + "7" * 5000 + "}"},
    {"payload": "no job field"},
]


@dataclass
class Figures:
    lost: int
    copies: int
    flagged: int
    exits: int
    extra: dict[str, float]


class Run:
    """A Redis server, a relay and WORKERS gateway processes in a folder of their own."""

    def __init__(self, directory: Path, relay: str, queue: str = "") -> None:
        self.directory = directory
        self.redis = RedisProcess(directory / "redis")
        self.redis.start()
        self.sink = SmtpSink(directory) if relay == "smtp-sink" else None
        relay_config = self.sink.relay_config() if self.sink else ""
        config = write_config(directory, self.redis.url, queue, relay_config)
        self.gateways = [GatewayProcess(config, directory / "gateway-0.log")]
        self.gateways[0].wait_ready()  # it makes the keys the others read
        for number in range(1, WORKERS):
            self.gateways.append(GatewayProcess(config, directory / f"gateway-{number}.log"))
            self.gateways[-1].wait_ready()
        self.exits = 0

    def sent(self) -> int:
        with self.redis.client() as client:
            return sum(1 for counts in statuses(client).values() if counts["sent"])

    def wait_sent(self, count: int, timeout: float) -> None:
        wait_for(lambda: self.sent() >= count, f"{count} messages sent", timeout)

    def figures(self, jobs: int, **extra: float) -> Figures:
        if self.sink is not None:
            delivered = self.sink.recipients()
        else:
            delivered = maildir_recipients(self.directory / "state")
        wanted = {email_job(n)["to"][0] for n in range(jobs)}
        lost = len(wanted - set(delivered))
        copies = sum(count - 1 for address, count in delivered.items() if address in wanted)
        with self.redis.client() as client:
            flagged = sum(
                SENT_AGAIN in json.loads(fields["event"]).get("reason", "")
                for _, fields in client.xrange("mailgw:events")
            )
        exits = self.exits + sum(not g.alive for g in self.gateways)
        return Figures(lost, copies, flagged, exits, dict(extra))

    def close(self) -> None:
        for gateway in self.gateways:
            gateway.stop()
        if self.sink is not None:
            self.sink.close()
        self.redis.close()


def kills(directory: Path, relay: str, jobs: int, count: int) -> Figures:
    run = Run(directory, relay, 'visibility_timeout = "5s"')
    try:
        with run.redis.client() as client:
            enqueue(client, (email_job(n) for n in range(jobs)))
        for kill in range(count):
            run.wait_sent(jobs * (kill + 1) // (count + 1), 600)
            victim = run.gateways[kill % WORKERS]
            victim.kill()
            victim.restart()
        run.wait_sent(jobs, 900)
        return run.figures(jobs, kills=count)
    finally:
        run.close()


def restart(directory: Path, relay: str, jobs: int) -> Figures:
    run = Run(directory, relay)
    try:
        with run.redis.client() as client:
            enqueue(client, (email_job(n) for n in range(jobs)))
        run.wait_sent(jobs // 3, 600)
        run.redis.kill()
        time.sleep(2)
        run.redis.start()
        back = time.monotonic()
        before = run.sent()
        run.wait_sent(before + 1, 120)
        resumed = time.monotonic() - back
        run.wait_sent(jobs, 900)
        return run.figures(jobs, resume_s=resumed)
    finally:
        run.close()


def hostile(directory: Path, relay: str, jobs: int, entries: int) -> Figures:
    run = Run(directory, relay)
    try:
        rss_before = max(g.rss_kb() for g in run.gateways)
        with run.redis.client() as client:
            pipe = client.pipeline(transaction=False)
            # Interleaved: the valid jobs are read in the same batches as the hostile ones.
            for number in range(max(jobs, entries)):
                if number < jobs:
                    pipe.xadd("mailgw:jobs", {"job": json.dumps(email_job(number))})
                if number < entries:
                    pipe.xadd("mailgw:jobs", HOSTILE[number % len(HOSTILE)])  # type: ignore[arg-type]
            pipe.execute()
            run.wait_sent(jobs, 900)
            wait_for(lambda: client.xlen("mailgw:jobs") == 0, "every entry settled", 300)
            dead = client.xlen("mailgw:dead")
        rss_after = max(g.rss_kb() for g in run.gateways)
        return run.figures(
            jobs, dead_letters=dead, rss_before_mb=rss_before / 1024, rss_after_mb=rss_after / 1024
        )
    finally:
        run.close()


def appointments(directory: Path, count: int, kills: int) -> AppointmentFindings:
    run = Run(directory, "smtp-sink", 'visibility_timeout = "10s"')
    run.gateways.append(
        GatewayProcess(run.gateways[0].config, directory / "scheduler.log", role="scheduler")
    )
    assert run.sink is not None
    sink = run.sink
    try:
        stories = appointment_stories(count, count * 3 // 10, count // 5, datetime.now(UTC))
        with run.redis.client() as client:
            enqueue(client, interleaved(stories))
        # Fewer messages than it makes (a confirmation or notice for most, a reminder for
        # half): the kills fall while they go out.
        expected = count
        for step in range(kills):
            wait_for(
                lambda s=step: len(sink.transactions()) >= expected * (s + 1) // (kills + 1),
                "messages",
                600,
            )
            if step == kills // 2:
                run.redis.kill()
                time.sleep(2)
                run.redis.start()
            victim = run.gateways[step % WORKERS]
            victim.kill()
            victim.restart()
        with run.redis.client() as client:
            wait_for(partial(settled, client), "every job settled", 900)
            told = histories(client, stories)
            waiting = waiting_dues(client, stories)
        findings = check_appointments(stories, relayed(sink), told, waiting, SENT_AGAIN)
        findings.problems = findings.problems[:5]
        return findings
    finally:
        run.close()


def report(name: str, rounds: list[Figures], jobs: int) -> None:
    print(f"\n{name}")
    for number, figures in enumerate(rounds, 1):
        extra = ", ".join(f"{key} {value:.1f}" for key, value in figures.extra.items())
        print(
            f"  round {number}: lost {figures.lost}, second copies {figures.copies}"
            f" ({figures.copies * 10_000 / jobs:.1f} per 10,000; flagged {figures.flagged}),"
            f" worker exits {figures.exits}, {extra}"
        )
    median = statistics.median(f.copies * 10_000 / jobs for f in rounds)
    print(
        f"  median: lost {statistics.median(f.lost for f in rounds)}, second copies"
        f" {median:.1f} per 10,000, exits {max(f.exits for f in rounds)} at most"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--hostile", type=int, default=1000)
    parser.add_argument("--appointments", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["kills", "restart", "hostile", "appointments"])
    parser.add_argument("--relay", choices=["maildir", "smtp-sink"], default="maildir")
    args = parser.parse_args()
    scenarios: dict[str, Callable[[Path], Figures]] = {
        "kills": lambda d: kills(d, args.relay, args.jobs, args.kills),
        "restart": lambda d: restart(d, args.relay, args.jobs),
        "hostile": lambda d: hostile(d, args.relay, args.jobs, args.hostile),
    }
    print(
        f"{args.jobs} e-mails per round, {WORKERS} `mailgw run --role outbound` processes,"
        f" relay: {args.relay}"
    )
    if args.only in (None, "appointments"):
        for number in range(1, args.rounds + 1):
            with tempfile.TemporaryDirectory() as directory:
                found = appointments(Path(directory), args.appointments, args.kills)
            print(f"\nappointments, round {number} ({args.kills} kills, 1 Redis restart): {found}")
    for name, scenario in scenarios.items():
        if args.only and name != args.only:
            continue
        rounds = []
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as directory:
                rounds.append(scenario(Path(directory)))
        report(name, rounds, args.jobs)


if __name__ == "__main__":
    main()
