"""Faults injected from outside, against real `mailgw run` processes and a real Redis:
Redis killed and restarted under load, workers SIGKILLed under load. Each asserts its
promise with numbers: no job lost, no process stopped, delivery resumed."""

from __future__ import annotations

import asyncio
import email
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outbound.email_handler import SENT_AGAIN
from tests.fault_harness import (
    ROOT,
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
from tests.smtp_server import SmtpServer
from tests.test_daemon import Daemon


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path / "redis")
    server.start()
    yield server
    server.close()


def sent(redis_process: RedisProcess) -> int:
    with redis_process.client() as client:
        return sum(1 for counts in statuses(client).values() if counts["sent"])


def reached(redis_process: RedisProcess, count: int) -> bool:
    return sent(redis_process) >= count


def test_redis_killed_and_restarted_under_load_stops_no_process(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    jobs = 600
    config = write_config(tmp_path, redis_process.url)
    first = GatewayProcess(config, tmp_path / "gateway-1.log")
    first.wait_ready()  # it makes the DKIM keys the others then read
    gateways = [first, GatewayProcess(config, tmp_path / "gateway-2.log")]
    gateways[1].wait_ready()
    try:
        with redis_process.client() as client:
            enqueue(client, (email_job(n) for n in range(jobs)))
        wait_for(lambda: sent(redis_process) >= 100, "100 messages sent", 60)
        redis_process.kill()
        time.sleep(2)
        redis_process.start()
        restarted = time.monotonic()
        with redis_process.client() as client:
            before = sum(1 for counts in statuses(client).values() if counts["sent"])
        wait_for(lambda: sent(redis_process) > before, "a message sent after the restart", 30)
        resumed = time.monotonic() - restarted
        wait_for(lambda: sent(redis_process) == jobs, f"{jobs} messages sent", 120)

        assert [g.alive for g in gateways] == [True, True]
        assert resumed < 15
        with redis_process.client() as client:
            outcomes = statuses(client)
            assert client.xlen("mailgw:dead") == 0
        assert {job for job, counts in outcomes.items() if counts["sent"]} == {
            f"job-{n}" for n in range(jobs)
        }
        delivered = maildir_recipients(tmp_path / "state")
        assert set(delivered) == {f"client{n}@example.com" for n in range(jobs)}
        for gateway in gateways:
            log = gateway.output()
            assert log.count("Redis is out of reach") == 1, log
            assert "Redis is back after" in log
            assert "Traceback" not in log, log
    finally:
        for gateway in gateways:
            gateway.stop()


def test_workers_sigkilled_under_load_lose_nothing(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    jobs, kills = 600, 4
    config = write_config(tmp_path, redis_process.url, 'visibility_timeout = "3s"')
    first = GatewayProcess(config, tmp_path / "gateway-1.log")
    first.wait_ready()
    gateways = [first, GatewayProcess(config, tmp_path / "gateway-2.log")]
    gateways[1].wait_ready()
    try:
        with redis_process.client() as client:
            enqueue(client, (email_job(n) for n in range(jobs)))
        for kill in range(kills):
            victim = gateways[kill % 2]
            target = (kill + 1) * 100
            wait_for(partial(reached, redis_process, target), f"{target} messages sent", 60)
            victim.kill()
            victim.restart()
        wait_for(lambda: sent(redis_process) == jobs, f"{jobs} messages sent", 120)

        assert [g.alive for g in gateways] == [True, True]
        with redis_process.client() as client:
            assert client.xlen("mailgw:dead") == 0
            assert client.xlen("mailgw:jobs") == 0
        delivered = maildir_recipients(tmp_path / "state")
        assert set(delivered) == {f"client{n}@example.com" for n in range(jobs)}
        # A second copy can only be of a job in hand when its worker was killed.
        duplicates = sum(delivered.values()) - jobs
        assert duplicates <= kills * 32
        for gateway in gateways:
            assert "Traceback" not in gateway.output()
    finally:
        for gateway in gateways:
            gateway.stop()


# What any Redis client may put on the jobs stream. Each strategy gives the entry's fields
# and whether it can only be dead-lettered (a mutated job may still be a valid one).
_NOT_UTF8 = st.binary(max_size=40).map(lambda b: b + b"\xff" + b)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
_VALID = email_job(0, "template")


def _mutated(field: str, value: object) -> dict[bytes | str, bytes | str]:
    return {"job": json.dumps({**_VALID, field: value})}


_ENTRIES = st.one_of(
    st.builds(lambda raw: ({"job": raw}, True), _NOT_UTF8),
    st.builds(
        lambda name, value: ({name: value}, True),
        st.binary(min_size=1, max_size=12).filter(lambda name: name != b"job"),
        st.binary(max_size=40),
    ),
    st.builds(lambda value: ({"job": json.dumps(value)}, True), _JSON),
    st.builds(lambda raw: ({"job": raw}, True), st.text(max_size=60)),
    st.builds(
        lambda field, value: (_mutated(field, value), False), st.sampled_from(sorted(_VALID)), _JSON
    ),
    st.builds(
        lambda name, value: ({"job": json.dumps(_VALID), name: value}, False),
        st.binary(min_size=1, max_size=12).filter(lambda name: name != b"job"),
        _NOT_UTF8,
    ),
    st.sampled_from(
        [
            ({"job": '{"v":1,"id":"x","kind":"email.send","context":' + "[" * 50_000}, True),
            ({"job": '{"v":1,"context":{"a":' + "[" * 50_000 + "]" * 50_000 + "}}"}, True),
            ({"job": '{"v":' + "7" * 5000 + "}"}, True),
            ({"job": b'{"v":1,"id":"\xed\xa0\x80"}'}, True),
        ]
    ),
)


@pytest.fixture(scope="module")
def fuzzed_gateways(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RedisProcess, list[GatewayProcess]]]:
    directory = tmp_path_factory.mktemp("fuzz")
    server = RedisProcess(directory / "redis")
    server.start()
    config = write_config(directory, server.url)
    first = GatewayProcess(config, directory / "gateway-1.log")
    first.wait_ready()
    gateways = [first, GatewayProcess(config, directory / "gateway-2.log")]
    gateways[1].wait_ready()
    yield server, gateways
    for gateway in gateways:
        gateway.stop()
    server.close()


_ROUND = iter(range(1_000_000))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(_ENTRIES, min_size=1, max_size=25))
def test_stream_fuzz_every_entry_ends_done_or_dead_and_every_worker_lives(
    fuzzed_gateways: tuple[RedisProcess, list[GatewayProcess]],
    entries: list[tuple[dict[bytes | str, bytes | str], bool]],
) -> None:
    server, gateways = fuzzed_gateways
    round_ = next(_ROUND)
    valid = [email_job(n, f"fuzz{round_}") for n in range(3)]
    with server.client() as client:
        pipe = client.pipeline(transaction=False)
        for fields, _ in entries:
            pipe.xadd("mailgw:jobs", fields)  # type: ignore[arg-type]
        hostile = [str(entry) for entry in pipe.execute()]
        enqueue(client, valid)
        wait_for(lambda: client.xlen("mailgw:jobs") == 0, "every entry settled", 60)
        dead = {fields["entry"] for _, fields in client.xrange("mailgw:dead")}
        outcomes = statuses(client)
    assert [g.alive for g in gateways] == [True, True]
    certain = {entry for entry, (_, only_dead) in zip(hostile, entries, strict=True) if only_dead}
    assert certain <= dead
    assert all(outcomes[job["id"]]["sent"] == 1 for job in valid)
    for gateway in gateways:
        assert "Traceback" not in gateway.output(), gateway.output()[-3000:]


def test_the_command_line_reads_what_hostile_entries_left(
    fuzzed_gateways: tuple[RedisProcess, list[GatewayProcess]],
) -> None:
    server, gateways = fuzzed_gateways
    with server.client() as client:
        client.xadd("mailgw:jobs", {"job": b'{"v":1,"id":"\xff"}', b"\xfe": b"\x00"})
        client.xadd("mailgw:jobs", {"job": '{"v":' + "7" * 5000 + "}"})
        client.xadd("mailgw:jobs", {"job": "[" * 50_000})
        wait_for(lambda: client.xlen("mailgw:jobs") == 0, "every entry settled", 30)
    config = gateways[0].config
    for command in (["dead-letters", "list"], ["events", "--count", "100000"], ["queue"]):
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "--config", str(config), *command],
            capture_output=True,
            cwd=ROOT,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        result.stdout.decode("utf-8")  # strict: nothing undecodable reaches a terminal
    listed = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), "dead-letters", "list"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    ).stdout  # fmt: skip
    assert "field 'job' is not UTF-8 text (byte 13)" in listed
    assert "not JSON: a number too long" in listed


@pytest.mark.parametrize("role", ["all", "outbound", "inbound", "scheduler"])
def test_every_role_rides_out_redis_away_and_says_so_in_systemd_status(
    tmp_path: Path, redis_process: RedisProcess, role: str
) -> None:
    config = write_config(tmp_path, redis_process.url)
    daemon = Daemon(config, tmp_path, "--role", role)
    try:
        daemon.expect("READY=1")
        redis_process.kill()
        away = daemon.expect_prefix("STATUS=Redis out of reach")
        assert re.fullmatch(r"STATUS=Redis out of reach for \d+s \(ConnectionError: .*", away)
        time.sleep(2)
        redis_process.start()
        daemon.expect("STATUS=Redis is back; resuming")
        assert daemon.process.poll() is None
        assert daemon.output().count("Redis is out of reach") == 1
        assert "Traceback" not in daemon.output()
        assert daemon.stop() == 0
    finally:
        daemon.close()


async def test_a_message_taken_by_the_relay_from_a_killed_worker_is_sent_again_as_itself(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    async with SmtpServer() as relay:
        relay_config = f"""
[relay]
transport = "smarthost"
[relay.smarthost]
host = "127.0.0.1"
port = {relay.port}
starttls = "none"
"""
        config = write_config(
            tmp_path, redis_process.url, 'visibility_timeout = "2s"', relay_config
        )
        first = GatewayProcess(config, tmp_path / "gateway-1.log")
        await asyncio.to_thread(first.wait_ready)
        second: GatewayProcess | None = None
        try:
            with redis_process.client() as client:
                enqueue(client, [{**email_job(1), "to": ["hold@example.com"]}])
            await asyncio.wait_for(relay.held.wait(), 30)
            # The relay has the message; its 250 never reaches the worker.
            first.kill()
            relay.release.set()
            second = GatewayProcess(config, tmp_path / "gateway-2.log")
            async with asyncio.timeout(30):
                while sent(redis_process) < 1:
                    await asyncio.sleep(0.05)
        finally:
            # Off the loop: the relay, on this loop, answers their QUIT.
            for gateway in (first, second):
                if gateway is not None:
                    await asyncio.to_thread(gateway.stop)
    ids = [email.message_from_bytes(m.data)["Message-ID"] for m in relay.messages]
    assert len(ids) == 2 and ids[0] == ids[1]
    with redis_process.client() as client:
        events = [json.loads(fields["event"]) for _, fields in client.xrange("mailgw:events")]
    [sent_event] = [e for e in events if e["status"] == "sent"]
    assert sent_event["message_id"] == ids[0]
    assert SENT_AGAIN in sent_event["reason"]


def test_bookings_moves_and_cancellations_through_kills_and_a_redis_restart(
    tmp_path: Path, redis_process: RedisProcess
) -> None:
    sink = SmtpSink(tmp_path)
    # Long enough that a loaded machine does not time jobs out: the faults are the kills.
    queue = 'visibility_timeout = "10s"'
    config = write_config(tmp_path, redis_process.url, queue, sink.relay_config())
    first = GatewayProcess(config, tmp_path / "gateway-1.log")
    first.wait_ready()
    gateways = [
        first,
        GatewayProcess(config, tmp_path / "gateway-2.log"),
        GatewayProcess(config, tmp_path / "scheduler.log", role="scheduler"),
    ]
    stories = appointment_stories(120, 40, 25, datetime.now(UTC))
    kills = 0
    try:
        for gateway in gateways[1:]:
            gateway.wait_ready()
        with redis_process.client() as client:
            enqueue(client, interleaved(stories))
        for step, relayed_count in enumerate((30, 60, 90, 120, 150)):
            wait_for(lambda n=relayed_count: len(sink.transactions()) >= n, "messages", 60)
            if step == 2:
                redis_process.kill()
                time.sleep(2)
                redis_process.start()
            else:
                victim = gateways[step % 2]
                victim.kill()
                victim.restart()
                kills += 1
        with redis_process.client() as client:
            wait_for(partial(settled, client), "every job settled", 120)
            told = histories(client, stories)
            waiting = waiting_dues(client, stories)
        findings = check_appointments(stories, relayed(sink), told, waiting, SENT_AGAIN)
        print(f"{kills} kills, 1 Redis restart: {findings}")
        assert findings.problems == [], findings
        assert [g.alive for g in gateways] == [True] * 3
        for gateway in gateways:
            assert "Traceback" not in gateway.output(), gateway.output()[-3000:]
    finally:
        for gateway in gateways:
            gateway.stop()
        sink.close()
