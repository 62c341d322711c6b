"""Real processes to break: a Redis server that can be killed and restarted on its port
with its data, `mailgw run` processes, and the count of what became of each job
(used by tests/test_faults.py and bench/faults.py)."""

from __future__ import annotations

import email
import email.policy
import getpass
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import zip_longest
from pathlib import Path
from typing import Any

import icalendar
from redis import Redis

from gateway.embedded_redis import executable
from gateway.keys import Keys
from gateway.notifications import waiting_in
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_TOML = """
business_name = "L'Atelier d'Élodie & Fils"
owner_email = "elodie@example.com"
plan = "growing"
timezone = "Europe/Paris"
locale = "fr"
country = "FR"
"""


class RedisProcess:
    """A redis-server on a fixed loopback port whose data survives a SIGKILL (append-only
    file, fsync at every write), so that it can be killed and started again as it was."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15) -> None:
        self.process = subprocess.Popen(
            [executable(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory),
             "--logfile", str(self.directory / "redis.log")],
        )  # fmt: skip
        client = Redis(port=self.port)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return
                except Exception:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def client(self) -> Redis:
        return Redis(port=self.port, decode_responses=True, encoding_errors="surrogateescape")

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class SmtpSink:
    """Postfix's smtp-sink on a free loopback port, every transaction it takes appended to
    one dump file: an independent relay that counts what it was given."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.dump = directory / f"smtp-sink-{self.port}.dump"
        binary = shutil.which("smtp-sink")
        assert binary is not None, "smtp-sink (Debian: postfix) is not installed"
        self.process = subprocess.Popen(
            [binary, "-u", getpass.getuser(), "-D", str(self.dump), f"127.0.0.1:{self.port}",
             "100"],
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.process.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)

    def relay_config(self) -> str:
        """The [relay] section of a gateway sending through it."""
        return (
            f'[relay]\ntransport = "smarthost"\n[relay.smarthost]\nhost = "127.0.0.1"\n'
            f'port = {self.port}\nstarttls = "none"\n'
        )

    def transactions(self) -> list[bytes]:
        """Each transaction taken: smtp-sink's X- lines, then the message."""
        if not self.dump.exists():
            return []
        text = self.dump.read_bytes()
        return [part for part in re.split(rb"(?m)^(?=X-Client-Addr: )", text) if part]

    def recipients(self) -> Counter[str]:
        """How many messages each recipient was given."""
        counts: Counter[str] = Counter()
        for transaction in self.transactions():
            for found in re.findall(rb"(?m)^X-Rcpt-Args: <([^>]*)>", transaction):
                counts[found.decode()] += 1
        return counts

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def write_config(directory: Path, redis_url: str, queue: str = "", extra: str = "") -> Path:
    """A gateway writing its mail to a Maildir, with the example account `salon`, no
    metrics endpoint (several processes share the host), and short queue timings;
    `queue` adds lines to [queue], `extra` sections of its own."""
    (directory / "accounts").mkdir(parents=True, exist_ok=True)
    (directory / "accounts" / "salon.toml").write_text(ACCOUNT_TOML, encoding="utf-8")
    config = directory / "mailgw.toml"
    config.write_text(
        f"""
state_dir = "state"
[redis]
url = "{redis_url}"
[queue]
block_timeout = "0.2s"
scheduler_interval = "0.1s"
shutdown_grace = "10s"
{queue}
[metrics]
enabled = false
[sms]
webhook_listen = "127.0.0.1:{free_port()}"
[inbound]
listen = "127.0.0.1:{free_port()}"
web_listen = "127.0.0.1:{free_port()}"
{extra}
""",
        encoding="utf-8",
    )
    return config


class GatewayProcess:
    """One `mailgw run` process, its output in a file."""

    def __init__(self, config: Path, log_path: Path, role: str = "outbound") -> None:
        self.config = config
        self.role = role
        self.log_path = log_path
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "gateway", "--config", str(self.config), "run",
                 "--role", self.role],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for(lambda: "mailgw running" in self.output(), "the gateway to start", timeout)

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a crash would."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def restart(self) -> None:
        self.process = self._spawn()

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(10)


def email_job(number: int, prefix: str = "job") -> dict[str, Any]:
    return {
        "v": 1,
        "id": f"{prefix}-{number}",
        "kind": "email.send",
        "account": "salon",
        "to": [f"client{number}@example.com"],
        "subject": f"Rendez-vous {number}",
        "text": "À mardi !",
    }


def enqueue(redis: Redis, jobs: Iterable[dict[str, Any]]) -> list[str]:
    """XADD each job as any upstream application would; their entry ids."""
    pipe = redis.pipeline(transaction=False)
    for job in jobs:
        pipe.xadd("mailgw:jobs", {"job": json.dumps(job)})
    return [str(entry) for entry in pipe.execute()]


def statuses(redis: Redis) -> dict[str, Counter[str]]:
    """Each job id's event statuses, counted."""
    found: dict[str, Counter[str]] = {}
    start = "-"
    while True:
        batch: Any = redis.xrange("mailgw:events", min=start, max="+", count=5000)
        for _, fields in batch:
            event = json.loads(fields["event"])
            found.setdefault(event["job"], Counter())[event["status"]] += 1
        if len(batch) < 5000:
            return found
        start = "(" + batch[-1][0]


def maildir_recipients(state_dir: Path) -> Counter[str]:
    """How many messages the Maildir holds for each recipient (Delivered-To)."""
    counts: Counter[str] = Counter()
    new = state_dir / "maildir" / "new"
    for path in new.iterdir() if new.exists() else ():
        with path.open("rb") as message:
            for line in message:
                if line.startswith(b"Delivered-To: "):
                    counts[line[14:].strip().decode()] += 1
                    break
    return counts


def wait_for(predicate: Callable[[], Any], what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- an interleaved booking / move / cancel load, and what a relay got of it ---


@dataclass(frozen=True)
class AppointmentStory:
    """One appointment as the upstream application tells it: booked at the first start,
    moved to each later one, perhaps cancelled; every event at once, in that order."""

    id: str
    starts: tuple[datetime, ...]
    cancelled: bool

    def jobs(self) -> list[dict[str, Any]]:
        kinds = ["appointment.booked"] + ["appointment.rescheduled"] * (len(self.starts) - 1)
        events = [(kind, start) for kind, start in zip(kinds, self.starts, strict=True)]
        if self.cancelled:
            events.append(("appointment.cancelled", self.starts[-1]))
        return [
            _appointment_job(
                f"{self.id}-{number}-{kind.split('.')[1]}", kind, self.id, start, number
            )
            for number, (kind, start) in enumerate(events)
        ]


def _appointment_job(
    job_id: str, kind: str, appointment: str, start: datetime, sequence: int
) -> dict[str, Any]:
    return {
        "v": 1,
        "id": job_id,
        "kind": kind,
        "account": "salon",
        "appointment": {
            "id": appointment,
            "calendar": "cal-1",
            "type": "cut",
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=45)).isoformat(),
            "timezone": "Europe/Paris",
            "clients": [{"name": "Zoé Martin", "emails": [f"{appointment}@example.com"]}],
            "sequence": sequence,
        },
    }


# The example account's one reminder (the default).
REMINDER = timedelta(hours=24)


def appointment_stories(
    count: int, moves: int, cancels: int, now: datetime
) -> list[AppointmentStory]:
    """`count` appointments, every other one starting 20 h ahead (its 24 h reminder is due
    at once: the late-booking rule), the others 30 h ahead (theirs waits); `moves` of them
    moved an hour later, `cancels` cancelled (moved ones among them)."""
    stories = []
    for number in range(count):
        ahead = timedelta(hours=20 if number % 2 else 30, minutes=number)
        start = (now + ahead).replace(microsecond=0)
        starts = (start, start + timedelta(hours=1)) if number < moves else (start,)
        stories.append(AppointmentStory(f"appt{number}", starts, count - number <= cancels))
    return stories


def interleaved(stories: list[AppointmentStory]) -> list[dict[str, Any]]:
    """Every story's jobs in its own order, the stories' taken in turns: each appointment's
    later events come while its earlier ones are still being handled."""
    jobs = [story.jobs() for story in stories]
    return [job for turn in zip_longest(*jobs) for job in turn if job is not None]


@dataclass(frozen=True)
class RelayedMessage:
    """What the relay got: one message to one recipient, read from its .ics part."""

    message_id: str
    appointment: str
    method: str
    sequence: int
    start: datetime | None


def relayed(sink: SmtpSink) -> list[RelayedMessage]:
    """The messages the relay took, in the order it took them (those with an .ics)."""
    found = []
    for transaction in sink.transactions():
        message = email.message_from_bytes(transaction, policy=email.policy.default)
        for part in message.walk():
            if part.get_content_type() == "text/calendar":
                calendar = icalendar.Calendar.from_ical(part.get_content())
                [event] = calendar.walk("VEVENT")
                uid = str(event["UID"])
                start = event.get("DTSTART")
                found.append(
                    RelayedMessage(
                        message_id=str(message["Message-ID"]),
                        appointment=uid.split("@")[0],
                        method=str(calendar["METHOD"]),
                        sequence=int(event["SEQUENCE"]),
                        start=start.dt if start is not None else None,
                    )
                )
    return found


def settled(redis: Redis) -> bool:
    """Nothing on the jobs stream, in flight or waiting for a retry."""
    return redis.xlen("mailgw:jobs") == 0 and redis.zcard("mailgw:retry") == 0


def histories(redis: Redis, stories: list[AppointmentStory]) -> dict[str, list[dict[str, Any]]]:
    """Each appointment's history, as `mailgw history` reads it."""
    return {
        s.id: [json.loads(f["event"]) for _, f in redis.xrange(f"mailgw:history:{s.id}")]
        for s in stories
    }


def waiting_dues(redis: Redis, stories: list[AppointmentStory]) -> dict[str, list[int]]:
    """Each appointment's notifications still waiting: their due times (epoch ms)."""
    return {
        s.id: [w.due_ms for w in waiting_in(redis.get(Keys().appointment_data(s.id)))]
        for s in stories
    }


@dataclass
class AppointmentFindings:
    """What the relay and the history say of an appointment load, counted."""

    appointments: int = 0
    messages: int = 0
    lost: int = 0
    old_time: int = 0
    after_cancel: int = 0
    copies: int = 0
    unflagged_copies: int = 0
    unrecorded: int = 0
    recorded_not_relayed: int = 0
    stale_waiting: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, what: str, problem: str) -> None:
        setattr(self, what, getattr(self, what) + 1)
        if len(self.problems) < 20:
            self.problems.append(problem)


def check_appointments(
    stories: list[AppointmentStory],
    messages: list[RelayedMessage],
    histories: dict[str, list[dict[str, Any]]],
    waiting: dict[str, list[int]],
    again: str,
) -> AppointmentFindings:
    """Each appointment's messages against its story and its history: none lost (a
    message for its last start, or its cancellation), none for an older start after one
    for a newer, none after its cancellation, each relayed message recorded `sent` and
    each `sent` relayed, a second copy only where its event says so (`again`), and nothing
    left waiting but the reminder of its last start. `waiting` is each appointment's
    waiting notifications' due times (epoch ms)."""
    findings = AppointmentFindings(appointments=len(stories), messages=len(messages))
    by_appointment: dict[str, list[RelayedMessage]] = {}
    for message in messages:
        by_appointment.setdefault(message.appointment, []).append(message)
    for story in stories:
        got = by_appointment.get(story.id, [])
        final = story.starts[-1]
        if story.cancelled:
            if not any(m.method == "CANCEL" for m in got):
                findings.add("lost", f"{story.id}: no cancellation")
        elif not any(m.method == "REQUEST" and m.start == final for m in got):
            findings.add("lost", f"{story.id}: nothing for its start {final}")
        highest = -1
        cancelled = False
        seen: set[str] = set()
        for message in got:
            if message.message_id in seen:
                continue  # a second copy: counted below, with its flag
            seen.add(message.message_id)
            if cancelled:
                findings.add("after_cancel", f"{story.id}: {message} after its cancellation")
            if message.sequence < highest:
                findings.add("old_time", f"{story.id}: {message} after SEQUENCE {highest}")
            highest = max(highest, message.sequence)
            cancelled = cancelled or message.method == "CANCEL"
        sent = [e for e in histories.get(story.id, []) if e["status"] == "sent"]
        recorded = {e["message_id"] for e in sent if e.get("channel") == "email"}
        flagged = {e["message_id"] for e in sent if again in (e.get("reason") or "")}
        counts = Counter(m.message_id for m in got)
        for message_id, count in counts.items():
            if message_id not in recorded:
                findings.add("unrecorded", f"{story.id}: {message_id} relayed, never recorded")
            if count > 1:
                findings.copies += count - 1
                if message_id not in flagged:
                    findings.add("unflagged_copies", f"{story.id}: {message_id} x{count}")
        for message_id in recorded - set(counts):
            findings.add("recorded_not_relayed", f"{story.id}: {message_id} recorded only")
        reminder = int((final - REMINDER).timestamp() * 1000)
        stale = [due for due in waiting.get(story.id, []) if story.cancelled or due != reminder]
        if stale:
            findings.add("stale_waiting", f"{story.id}: still waiting {stale}")
    return findings
