"""Real processes to break: a Redis server that can be killed and restarted on its port
with its data, `mailgw run` processes, and the count of what became of each job
(used by tests/test_faults.py and bench/faults.py)."""

from __future__ import annotations

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
from pathlib import Path
from typing import Any

from redis import Redis

from gateway.embedded_redis import executable
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
                [sys.executable, "-m", "gateway.cli", "--config", str(self.config), "run",
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
