"""The log line format: one line per event, journald-aware, without secrets."""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.commands.daemon import METRICS_PORT_OFFSETS
from gateway.logs import LineFormatter, redact, writes_to_journal
from tests.redis_server import free_ports

ROOT = Path(__file__).resolve().parent.parent
ISO_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"


@pytest.fixture
def logged(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own writing through LineFormatter (journal=param) to a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(LineFormatter(journal=getattr(request, "param", False)))
    logger = logging.getLogger(f"mailgw.test.{request.node.name}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)


def test_a_line_with_time_level_logger_message_and_fields(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = logged
    logger.warning("job %s failed", "b1", extra={"attempt": 2, "reason": '451 4.3.0 "busy"'})
    logger.info("empty", extra={"to": ""})
    first, second = out.getvalue().splitlines()
    when, _, rest = first.partition(" ")
    assert re.fullmatch(ISO_TIME, when), first
    assert rest == f'WARNING {logger.name}: job b1 failed attempt=2 reason="451 4.3.0 \\"busy\\""'
    assert second.endswith(f'INFO {logger.name}: empty to=""')


@pytest.mark.parametrize("logged", [True], indirect=True)
def test_for_journald_a_priority_prefix_and_no_time(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = logged
    logger.debug("d")
    logger.info("i")
    logger.warning("w")
    logger.error("e")
    logger.critical("c")
    assert out.getvalue().splitlines() == [
        f"<7>DEBUG {logger.name}: d",
        f"<6>INFO {logger.name}: i",
        f"<4>WARNING {logger.name}: w",
        f"<3>ERROR {logger.name}: e",
        f"<2>CRITICAL {logger.name}: c",
    ]


def test_line_breaks_and_tracebacks_stay_on_one_line(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = logged
    logger.error("reload refused:\nmailgw.toml:relay.port: too big")
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logger.exception("job %s failed unexpectedly", "b2", extra={"job": "b2"})
    first, second = out.getvalue().splitlines()
    assert first.endswith(r"reload refused:\nmailgw.toml:relay.port: too big")
    assert ': job b2 failed unexpectedly job=b2 exc="Traceback (most recent call last):\\n' in (
        second
    )
    assert second.endswith('ValueError: boom\\nsecond line"')


def test_no_password_of_a_url_nor_secret_field_is_written(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = logged
    logger.info(
        "connecting to %s",
        "redis://default:hunter2@redis.internal:6379/0",
        extra={
            "sentinel": "redis+sentinel://:p@ss:w0rd@a:26379,b:26379/mymaster",
            "password_file": "/etc/mailgw/smtp-password",
            "token": "abc",
            "url": "https://mail.example.org/unsubscribe/xyz",
        },
    )
    line = out.getvalue()
    for secret in ("hunter2", "p@ss", "w0rd", "smtp-password", "abc"):
        assert secret not in line
    assert "connecting to redis://default:***@redis.internal:6379/0 " in line
    assert "sentinel=redis+sentinel://:***@a:26379,b:26379/mymaster " in line
    assert "password_file=*** token=*** url=https://mail.example.org/unsubscribe/xyz" in line


def test_redact_leaves_urls_without_password_alone() -> None:
    for text in (
        "http://127.0.0.1:8026/sms/twilio/status",
        "unix:///var/lib/mailgw/redis.sock",
        "redis://redis.internal:6379/0 and mailto:someone@example.org",
        "https://host:8443/path@x",
    ):
        assert redact(text) == text
    assert (
        redact("rediss://u:pw@h/0 then redis://:x@h2") == "rediss://u:***@h/0 then redis://:***@h2"
    )


def test_the_journal_is_recognised_by_device_and_inode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "stderr").open("w") as stream:
        status = os.fstat(stream.fileno())
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
        assert not writes_to_journal(stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino}")
        assert writes_to_journal(stream)
        assert not writes_to_journal(io.StringIO())
        # Set by systemd for a parent whose standard error was not handed down.
        monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino + 1}")
        assert not writes_to_journal(stream)


def run_daemon(tmp_path: Path, redis_url: str, journal: str | None) -> list[str]:
    """`mailgw run --role scheduler` until it says it runs, then stopped; its stderr lines.
    `journal`: "match" sets $JOURNAL_STREAM to its standard error, "other" to another file."""
    config = tmp_path / "mailgw.toml"
    # The password is not checked: the test server's default user has none.
    host = redis_url.removeprefix("redis://")
    config.write_text(
        f"""
state_dir = "state"
[redis]
url = "redis://default:hunter2@{host}"
[metrics]
# the scheduler role listens at this port + 3 (METRICS_PORT_OFFSETS)
listen = "127.0.0.1:{free_ports(max(METRICS_PORT_OFFSETS.values()) + 1)}"
""",
        encoding="utf-8",
    )
    log_path = tmp_path / "stderr.log"
    with log_path.open("w") as log:
        status = os.fstat(log.fileno())
        env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
        if journal is not None:
            inode = status.st_ino if journal == "match" else status.st_ino + 1
            env["JOURNAL_STREAM"] = f"{status.st_dev}:{inode}"
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config), "run",
             "--role", "scheduler"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while "mailgw running" not in log_path.read_text():
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0, log_path.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return log_path.read_text().splitlines()


def test_the_daemon_logs_for_journald_under_systemd(tmp_path: Path, redis_url: str) -> None:
    lines = run_daemon(tmp_path, redis_url, journal="match")
    assert "<6>INFO gateway.commands.daemon: mailgw running (role scheduler, config " in "\n".join(
        lines
    )
    assert "<6>INFO gateway.commands.daemon: mailgw stopped" in lines
    assert all(re.match(r"<\d>[A-Z]+ [\w.]+: ", line) for line in lines), lines
    assert "hunter2" not in "\n".join(lines)


def test_the_daemon_logs_with_the_time_elsewhere(tmp_path: Path, redis_url: str) -> None:
    lines = run_daemon(tmp_path, redis_url, journal="other")
    assert lines[-1].endswith(" INFO gateway.commands.daemon: mailgw stopped")
    assert all(re.match(ISO_TIME + r" [A-Z]+ [\w.]+: ", line) for line in lines), lines
