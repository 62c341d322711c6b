"""Hostile owner templates against a real `mailgw run`: another account's mail still goes out
at once, the hostile job is dead-lettered with its reason, the daemon's memory stays flat."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.jobs import parse_job
from gateway.queue import JobQueue, QueueOptions
from tests.conftest import FixedClock
from tests.gateway_harness import Gateway
from tests.redis_server import free_port
from tests.smtp_server import SmtpServer
from tests.support import ACCOUNT
from tests.test_daemon import Daemon
from tests.test_outbound import confirmation as elodie_confirmation

ROOT = Path(__file__).resolve().parent.parent
HOSTILE, CALM = "hostile", "calm"
# Another account's message is sent within this, whatever the hostile one does.
DELIVERY_BOUND = 5.0
# The daemon's RSS may grow by this much while a hostile job is handled (KiB).
RSS_BOUND = 100 * 1024
# Past this growth the daemon is killed at once, so that a failing run spares the machine.
RSS_KILL = 1024 * 1024

# Each wants gigabytes or hours of an unbounded renderer.
TEMPLATES = {
    "percent": "{{ '%0500000000d' % 1 }}",
    "center": "{{ 'x'|center(500000000) }}",
    "format": "{{ '{:>500000000}'.format(1) }}",
    "ten_gigabytes": "{% for i in range(99999) %}{{ 'x' * 99999 }}{% endfor %}",
    "nested_loops": "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}"
    "{% endfor %}",
}
REASONS = {
    "percent": "memory over 256 MB",
    "center": "memory over 256 MB",
    "format": "memory over 256 MB",
    "ten_gigabytes": "output over 1 MB",
    "nested_loops": "render time over 2 s",
}


def write_config(directory: Path, redis_url: str, smtp_port: int) -> Path:
    config = directory / "mailgw.toml"
    config.write_text(
        f"""
state_dir = "state"
[redis]
url = "{redis_url}"
[queue]
block_timeout = "0.1s"
shutdown_grace = "5s"
[[sender_domains]]
domain = "acuityscheduling.com"
[[sender_domains.dkim]]
selector = "mailgw-ed25519"
algorithm = "ed25519"
[relay]
transport = "smarthost"
[relay.smarthost]
host = "127.0.0.1"
port = {smtp_port}
starttls = "none"
[sms]
webhook_listen = "127.0.0.1:{free_port()}"
[inbound]
listen = "127.0.0.1:{free_port()}"
web_listen = "127.0.0.1:{free_port()}"
[metrics]
listen = "127.0.0.1:{free_port()}"
""",
        encoding="utf-8",
    )
    (directory / "accounts").mkdir()
    # The example account's follow-ups name the example's service-wide templates.
    shutil.copytree(ROOT / "config/templates", directory / "templates")
    for account in (HOSTILE, CALM):
        shutil.copy(ROOT / "config/accounts/atelier-elodie.toml", directory / "accounts")
        (directory / "accounts/atelier-elodie.toml").rename(
            directory / "accounts" / f"{account}.toml"
        )
    return config


def appointment(address: str) -> dict[str, Any]:
    return {
        "id": "appt-1",
        "calendar": "101",
        "type": "2001",
        "start": "2030-11-24T13:30:00Z",
        "end": "2030-11-24T14:15:00Z",
        "timezone": "Europe/Paris",
        "clients": [{"name": "Zoé Martin", "emails": [address], "phone": "+33612345678"}],
    }


def confirmation(job_id: str, account: str, address: str) -> dict[str, Any]:
    return {
        "v": 1,
        "id": job_id,
        "kind": "email.send",
        "account": account,
        "to": [address],
        "template": "confirmation",
        "context": {"appointment": appointment(address)},
    }


def sms_reminder(job_id: str, account: str) -> dict[str, Any]:
    return {
        "v": 1,
        "id": job_id,
        "kind": "sms.send",
        "account": account,
        "to": "+33612345678",
        "template": "reminder",
        "context": {"appointment": appointment("zoe@example.com")},
    }


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


class RssWatch:
    """The daemon's resident memory sampled every 20 ms: its peak, and a SIGKILL past RSS_KILL."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = rss_kib(pid)
        self.peak = self.start
        self.killed = False

    async def run(self) -> None:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            while True:
                self.peak = max(self.peak, rss_kib(self.pid))
                if self.peak - self.start > RSS_KILL:
                    self.killed = True
                    os.kill(self.pid, signal.SIGKILL)
                    return
                await asyncio.sleep(0.02)

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.start) / 1024


@dataclass
class Run:
    """A daemon (role outbound) relaying to the test's SMTP server, and its queue."""

    daemon: Daemon
    directory: Path
    config: Path
    queue: JobQueue
    smtp: SmtpServer

    async def enqueue(self, job: dict[str, Any]) -> float:
        await self.queue.enqueue(parse_job(json.dumps(job)))
        return time.monotonic()

    async def delivered_to(self, address: str, since: float, bound: float) -> float:
        """Seconds from `since` until a message to `address` reached the SMTP server."""
        while time.monotonic() - since < bound:
            if any(address in m.recipients for m in self.smtp.messages):
                return time.monotonic() - since
            await asyncio.sleep(0.02)
        raise AssertionError(
            f"nothing reached {address} within {bound:g} s; daemon log:\n{self.daemon.output()}"
        )

    async def failed(self, job_id: str, bound: float) -> dict[str, Any]:
        """The `failed` event of `job_id`, waited for up to `bound` seconds."""
        deadline = time.monotonic() + bound
        while True:
            for _, raw in await self.queue.events("0", 10_000):
                event = json.loads(raw)
                if event["job"] == job_id and event["status"] == "failed":
                    return dict(event)
            if time.monotonic() > deadline:
                raise AssertionError(f"{job_id} did not fail within {bound:g} s")
            await asyncio.sleep(0.05)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.close()


@pytest.fixture
async def run_daemon(
    tmp_path: Path, redis_url: str, redis: Redis, smtp: SmtpServer, daemons: list[Daemon]
) -> AsyncIterator[Any]:
    async def start(templates: dict[str, str], sms_text: str | None = None) -> Run:
        config = write_config(tmp_path, redis_url, smtp.port)
        for name, source in templates.items():
            path = tmp_path / "templates" / HOSTILE / "fr" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source, encoding="utf-8")
        if sms_text is not None:
            account = tmp_path / "accounts" / f"{HOSTILE}.toml"
            account.write_text(
                account.read_text(encoding="utf-8").replace(
                    '# text = "Rappel', f"text = {json.dumps(sms_text)}\n# ", 1
                ),
                encoding="utf-8",
            )
        # The readiness wait blocks this loop (and the SMTP server on it): nothing is sent yet.
        daemon = Daemon(config, tmp_path, "--role", "outbound")
        daemons.append(daemon)
        daemon.expect("READY=1")
        queue = JobQueue(redis, QueueOptions(), FixedClock(time.time()))
        await queue.ensure_group()
        return Run(daemon, tmp_path, config, queue, smtp)

    yield start


async def hostile_then_calm(run: Run, hostile_job: dict[str, Any]) -> tuple[float, RssWatch]:
    """The hostile account's job, then 1 s later the calm one's: how soon the calm one's mail
    left, and the daemon's memory meanwhile."""
    watch = RssWatch(run.daemon.process.pid)
    watching = asyncio.create_task(watch.run())
    try:
        await run.enqueue(hostile_job)
        await asyncio.sleep(1.0)
        since = await run.enqueue(confirmation("calm-1", CALM, "paul@example.com"))
        latency = await run.delivered_to("paul@example.com", since, DELIVERY_BOUND)
        await run.failed(hostile_job["id"], 10.0)
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        print(f"{hostile_job['id']}: RSS {watch.start // 1024} MiB, +{watch.growth_mib:.0f} MiB")
    assert not watch.killed, f"the daemon grew past {RSS_KILL // 1024} MiB and was killed"
    return latency, watch


@pytest.mark.parametrize("name", TEMPLATES)
async def test_hostile_template_stops_no_one_else(run_daemon: Any, name: str) -> None:
    run = await run_daemon({"confirmation.html": TEMPLATES[name]})
    latency, watch = await hostile_then_calm(
        run, confirmation("hostile-1", HOSTILE, "zoe@example.com")
    )
    event = await run.failed("hostile-1", 0)
    print(f"{name}: calm account's mail after {latency:.3f} s, RSS +{watch.growth_mib:.1f} MiB")
    assert event["reason"] == (f"template confirmation.html of account {HOSTILE}: {REASONS[name]}")
    assert (watch.peak - watch.start) < RSS_BOUND, f"RSS grew {watch.growth_mib:.0f} MiB"
    assert latency < DELIVERY_BOUND
    letters = await run.queue.dead_letters.read()
    assert [(d.job_id, d.reason) for d in letters] == [("hostile-1", event["reason"])]
    assert not any("zoe@example.com" in m.recipients for m in run.smtp.messages)


async def test_hostile_sms_text_stops_no_one_else(run_daemon: Any) -> None:
    run = await run_daemon({}, sms_text=TEMPLATES["ten_gigabytes"])
    latency, watch = await hostile_then_calm(run, sms_reminder("hostile-sms", HOSTILE))
    event = await run.failed("hostile-sms", 0)
    print(f"SMS text: calm account's mail after {latency:.3f} s, RSS +{watch.growth_mib:.1f} MiB")
    assert event["reason"] == f"the SMS text of account {HOSTILE}: output over 1 MB"
    assert (watch.peak - watch.start) < RSS_BOUND, f"RSS grew {watch.growth_mib:.0f} MiB"


async def test_a_backlog_of_one_account_costs_one_time_limit(run_daemon: Any) -> None:
    run = await run_daemon({"confirmation.txt": TEMPLATES["nested_loops"]})
    for n in range(5):
        await run.enqueue(confirmation(f"hostile-{n}", HOSTILE, "zoe@example.com"))
    since = await run.enqueue(confirmation("calm-1", CALM, "paul@example.com"))
    # The calm account's mail does not wait for the hostile account's turn in the pool.
    assert await run.delivered_to("paul@example.com", since, DELIVERY_BOUND) < DELIVERY_BOUND
    failed = [await run.failed(f"hostile-{n}", 20.0) for n in range(5)]
    # One render ran into the time limit (2 s), the four others were refused at once, not
    # 2 s after one another.
    times = sorted(datetime.fromisoformat(e["at"]).timestamp() for e in failed)
    print(f"five jobs of a 2 s template dead-lettered within {times[-1] - times[0]:.3f} s")
    assert times[-1] - times[0] < 1.0
    assert {e["reason"] for e in failed} == {
        f"template confirmation.txt of account {HOSTILE}: render time over 2 s"
    }


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (the fork server and the render processes, for a daemon)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The command name, in parentheses, may hold spaces: the fields after it are plain.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_a_render_left_by_a_killed_daemon_ends_by_itself(run_daemon: Any) -> None:
    run = await run_daemon({"confirmation.txt": TEMPLATES["nested_loops"]})
    await run.enqueue(confirmation("hostile-1", HOSTILE, "zoe@example.com"))
    # The fork server and the pool's two processes, one of them rendering.
    deadline = time.monotonic() + 10
    while len(children := descendants(run.daemon.process.pid)) < 3:
        assert time.monotonic() < deadline, f"the render pool did not start: {children}"
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    run.daemon.process.kill()
    run.daemon.process.wait()
    # No one is left to apply the 2 s limit: the render's CPU limit (3 s) ends it, and the
    # idle processes end with their pipes to the daemon.
    deadline = time.monotonic() + 10
    while left := {pid for pid in children if running(pid)}:
        assert time.monotonic() < deadline, f"still running after the daemon: {left}"
        await asyncio.sleep(0.1)


# --- the same parts in the test's process, through the gateway harness ---


def own_templates(gateway: Gateway, files: dict[str, str]) -> None:
    """Files of atelier-elodie's own folder, taken as a reload takes them."""
    folder = gateway.config.settings.templates.directory / "atelier-elodie" / "fr"
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        (folder / name).write_text(source, encoding="utf-8")
    gateway.outbound.reload(gateway.config.settings)


async def test_a_template_over_its_limit_fails_at_once_until_the_templates_are_reloaded(
    gateway: Gateway, smtp: SmtpServer
) -> None:
    pool = gateway.outbound.pool
    own_templates(gateway, {"confirmation.subject.txt": TEMPLATES["nested_loops"]})
    started = time.monotonic()
    await gateway.run(elodie_confirmation("c1", "zoe@example.com"))
    first = time.monotonic() - started
    await gateway.run(elodie_confirmation("c2", "zoe@example.com"))
    second = time.monotonic() - started - first
    assert first >= 2.0 and second < 0.5
    reason = "template confirmation.subject.txt of account atelier-elodie: render time over 2 s"
    assert [d.reason for d in await gateway.queue.dead_letters.read()] == [reason, reason]

    own_templates(gateway, {"confirmation.subject.txt": "Rendez-vous, {{ client.name }}"})
    await gateway.run(elodie_confirmation("c3", "zoe@example.com"))
    [received] = smtp.messages
    assert b"Subject: Rendez-vous, =?utf-8?q?Zo=C3=A9?= Martin" in received.data
    # The reload made new templates, not a new pool.
    assert gateway.outbound.pool is pool


async def test_an_account_template_s_errors_read_as_in_the_daemon_s_process(
    gateway: Gateway,
) -> None:
    own_templates(gateway, {"confirmation.txt": "Bonjour,\n{{ appointment.typ }}\n"})
    await gateway.run(elodie_confirmation("c1", "zoe@example.com"))
    assert [d.reason for d in await gateway.queue.dead_letters.read()] == [
        "template confirmation.txt (account override) line 2: 'dict object' has no attribute 'typ'"
    ]


async def test_an_account_s_own_sms_text_renders_in_the_pool(gateway: Gateway) -> None:
    text = "Rappel {{ business }} : {{ date }} à {{ time }}, {{ client }}"
    for account, hipaa in (("texter", False), ("clinic", True)):
        data = {k: v for k, v in ACCOUNT.items() if k != "id"}
        data |= {"verified": True, "hipaa": hipaa}
        data["notifications"] = {"sms_reminder": {"enabled": True, "text": text}}
        await gateway.run(
            {"v": 1, "id": f"u-{account}", "kind": "account.upsert", "account": account,
             "data": data}
        )  # fmt: skip
        await gateway.run({**sms_reminder(f"s-{account}", account), "to": "+33612345678"})
    texter, clinic = gateway.texts()
    assert texter["text"] == (
        "Rappel L'Atelier d'Élodie & Fils : dimanche 24 novembre 2030 à 14:30, Zoé Martin"
    )
    assert clinic["text"].startswith("Rappel")
    notes = {e["job"]: e["reason"] for e in await gateway.events() if e["status"] == "sent"}
    assert notes["s-clinic"].endswith(
        "the account's own text was not used: 'client' is undefined"
        " (HIPAA accounts' texts name neither client nor type)"
    )
