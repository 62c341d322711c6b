"""The Prometheus endpoint over real HTTP, after real relaying, texting and inbound sessions."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import treq
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from redis.asyncio import Redis
from twisted.internet.defer import Deferred, maybeDeferred

from gateway import metrics
from gateway.clock import SystemClock
from gateway.depth_metrics import refresh_queue_depths, watch_queue_depths
from gateway.errors import ConfigError
from gateway.queue import JobQueue, QueueOptions
from gateway.settings import Endpoint, InboundSettings, Settings
from inbound import smtp_replies as replies
from inbound.received import ReceivedMessage
from inbound.smtp_replies import REJECT_UNKNOWN_RCPT
from inbound.smtp_server import InboundHandler, start_server
from tests.gateway_harness import Gateway
from tests.redis_server import free_port
from tests.smtp_server import SmtpServer
from tests.test_outbound import confirmation

ROOT = Path(__file__).resolve().parent.parent

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _wait(deferred: Deferred[Any]) -> Any:
    return await deferred.asFuture(asyncio.get_running_loop())


def settings_on(port: int, **metrics_table: Any) -> Settings:
    return Settings.model_validate({"metrics": {"listen": f"127.0.0.1:{port}", **metrics_table}})


@pytest.fixture
async def endpoint() -> AsyncIterator[str]:
    """The metrics endpoint served as the daemon serves it; its URL."""
    port = free_port()
    listening = metrics.serve_metrics(settings_on(port))
    yield f"http://127.0.0.1:{port}/metrics"
    await _wait(maybeDeferred(listening.stopListening))


async def scrape(url: str) -> tuple[str, Samples]:
    response = await _wait(treq.get(url))
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain")
    text = await _wait(treq.text_content(response))
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def grown(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


class Client:
    """A raw SMTP client."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def reply(self) -> str:
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), 5)).decode()
            if line[3:4] != "-":
                return line.rstrip("\r\n")

    async def command(self, line: str) -> str:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    def close(self) -> None:
        self.writer.close()


async def inbound_session(tmp_path: Any) -> list[str]:
    """One client's session against the inbound server (at most one connection per client):
    a recipient refused, one accepted, a message queued, then a second connection refused."""
    port = free_port()
    settings = InboundSettings.model_validate(
        {"listen": f"127.0.0.1:{port}", "hostname": "mx.test", "max_connections_per_client": 1},
        context={"base_dir": tmp_path},
    )
    stored: list[ReceivedMessage] = []

    async def policy(address: str) -> str | None:
        return None if address.startswith("reply") else REJECT_UNKNOWN_RCPT

    async def store(message: ReceivedMessage) -> None:
        stored.append(message)

    server = await start_server(settings, InboundHandler(policy, store, settings))
    client = await Client.connect(port)
    try:
        said = [await client.reply()]
        for line in (
            "EHLO client.test",
            "MAIL FROM:<someone@client.test>",
            "RCPT TO:<nobody@reply.test>",
            "RCPT TO:<reply+abc@reply.test>",
            "DATA",
        ):
            said.append(await client.command(line))
        said.append(await client.command("Subject: hi\r\n\r\nhello\r\n."))
        second = await Client.connect(port)
        said.append(await second.reply())
        second.close()
    finally:
        client.close()
        server.close()
        await server.wait_closed()
    assert len(stored) == 1
    return said


async def test_the_endpoint_counts_what_the_gateway_did(
    endpoint: str, gateway: Gateway, smtp: SmtpServer, tmp_path: Any
) -> None:
    _, before = await scrape(endpoint)

    await gateway.run(confirmation("e1", "zoe@example.org", "reject@example.org"))
    await gateway.run(_sms("t1", "Bonjour, à demain !"))
    await gateway.run(_sms("t2", "À demain 🙂 " + "x" * 80))
    said = await inbound_session(tmp_path)
    # An entry of a kind nobody knows: dead-lettered, counted under "unknown".
    await gateway.queue.redis.xadd(
        "mailgw:jobs", {"job": '{"v": 1, "id": "x1", "kind": "no.such.kind", "account": "a"}'}
    )
    await gateway.drain()
    await refresh_queue_depths(gateway.queue)

    text, after = await scrape(endpoint)
    for family in (
        "mailgw_jobs_total",
        "mailgw_queue_depth",
        "mailgw_relay_seconds",
        "mailgw_sms_sent_total",
        "mailgw_sms_segments_total",
        "mailgw_inbound_replies_total",
        "mailgw_events_total",
    ):
        assert f"# TYPE {family} " in text

    # Relay latency: one observation per recipient, by transport and outcome.
    for status in ("sent", "bounced"):
        count = grown(before, after, "mailgw_relay_seconds_count", transport="smarthost",
                      status=status)  # fmt: skip
        assert count == 1
        assert grown(before, after, "mailgw_relay_seconds_sum", transport="smarthost",
                     status=status) > 0  # fmt: skip
    in_time = grown(before, after, "mailgw_relay_seconds_bucket", transport="smarthost",
                    status="sent", le="60.0")  # fmt: skip
    assert in_time == 1
    assert "_created" not in text
    assert len(smtp.messages) == 1

    # Texts: one GSM-7 text of one part, one UCS-2 (the emoji) of two.
    assert [(t["encoding"], t["parts"]) for t in gateway.texts()] == [("gsm7", 1), ("ucs2", 2)]
    assert grown(before, after, "mailgw_sms_sent_total", provider="file", encoding="gsm7") == 1
    assert grown(before, after, "mailgw_sms_sent_total", provider="file", encoding="ucs2") == 1
    assert grown(before, after, "mailgw_sms_segments_total", provider="file", encoding="ucs2") == 2

    # Inbound replies, as the client read them.
    assert said[2:] == [
        replies.OK,
        REJECT_UNKNOWN_RCPT,
        replies.ACCEPTED_RCPT,
        replies.START_DATA,
        said[6],
        replies.REJECT_TOO_MANY_CONNECTIONS.format(hostname="mx.test"),
    ]
    assert said[6].startswith("250 2.0.0 Ok: queued as ")
    assert grown(before, after, "mailgw_inbound_replies_total", stage="connect", code="220") == 1
    assert grown(before, after, "mailgw_inbound_replies_total", stage="connect", code="421") == 1
    assert grown(before, after, "mailgw_inbound_replies_total", stage="rcpt", code="550") == 1
    assert grown(before, after, "mailgw_inbound_replies_total", stage="rcpt", code="250") == 1
    assert grown(before, after, "mailgw_inbound_replies_total", stage="data", code="250") == 1

    # Jobs, with a kind nobody knows folded into one series; events; queue depths.
    assert grown(before, after, "mailgw_jobs_total", kind="email.send", outcome="done") == 1
    assert grown(before, after, "mailgw_jobs_total", kind="sms.send", outcome="done") == 2
    assert grown(before, after, "mailgw_jobs_total", kind="unknown", outcome="dead_lettered") == 1
    assert 'kind="no.such.kind"' not in text
    assert value(after, "mailgw_jobs_total", kind="order.placed", outcome="retried") == 0
    assert ("mailgw_jobs_total", frozenset({("kind", "order.placed"), ("outcome", "retried")})) in (
        after
    )
    assert grown(before, after, "mailgw_events_total", channel="email", status="sent") == 1
    assert grown(before, after, "mailgw_events_total", channel="email", status="bounced") == 1
    assert grown(before, after, "mailgw_events_total", channel="sms", status="sent") == 2
    depths = await gateway.queue.depths()
    for state in ("ready", "in_flight", "scheduled", "retrying", "dead_letters"):
        assert value(after, "mailgw_queue_depth", state=state) == getattr(depths, state)
    # No address, number or job id in any label.
    for secretish in ("zoe@example.org", "+33612345678", "e1", "t1", "atelier-elodie"):
        assert f'"{secretish}"' not in text
    # The process's own figures come along.
    assert value(after, "process_open_fds") > 0


async def test_the_counts_of_other_processes_are_added(endpoint: str, tmp_path: Path) -> None:
    """The SMTP processes beside the daemon count in prometheus_client's multiprocess files,
    which outlive them; the endpoint adds them to the daemon's own."""
    _, before = await scrape(endpoint)
    code = (
        "from gateway import metrics\n"
        "metrics.record_inbound_reply('data', '250 2.0.0 Ok')\n"
        "metrics.record_inbound_reply('connect', '421 4.7.0 busy')\n"
        "metrics.observe_relay('maildir', 'sent', 0.2)\n"
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        cwd=ROOT, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, stderr.decode()
    metrics.record_inbound_reply("data", "250")
    metrics.add_process_files(tmp_path)
    try:
        text, after = await scrape(endpoint)
    finally:
        metrics.remove_process_files(tmp_path)

    assert grown(before, after, "mailgw_inbound_replies_total", stage="data", code="250") == 2
    assert grown(before, after, "mailgw_inbound_replies_total", stage="connect", code="421") == 1
    relayed = {"transport": "maildir", "status": "sent"}
    assert grown(before, after, "mailgw_relay_seconds_count", **relayed) == 1
    assert grown(before, after, "mailgw_relay_seconds_bucket", **relayed, le="0.25") == 1
    assert grown(before, after, "mailgw_relay_seconds_bucket", **relayed, le="0.1") == 0
    assert text.count("# TYPE mailgw_inbound_replies_total counter") == 1
    _, without = await scrape(endpoint)
    assert grown(before, without, "mailgw_inbound_replies_total", stage="data", code="250") == 1


def _sms(job_id: str, text: str) -> dict[str, Any]:
    return {
        "v": 1,
        "id": job_id,
        "kind": "sms.send",
        "account": "atelier-elodie",
        "to": "06 12 34 56 78",
        "text": text,
    }


async def test_queue_depths_follow_the_queue(redis: Redis, endpoint: str) -> None:
    queue = JobQueue(redis, QueueOptions(), SystemClock())
    await queue.ensure_group()
    await redis.xadd(queue.keys.jobs, {"job": "{}"})
    await redis.xadd(queue.keys.dead, {"job": "{}", "reason": "test"})
    watcher = asyncio.create_task(watch_queue_depths(queue, interval=0.05))
    try:
        _, samples = await scrape(endpoint)
        for _ in range(100):
            if value(samples, "mailgw_queue_depth", state="ready") == 1:
                break
            await asyncio.sleep(0.02)
            _, samples = await scrape(endpoint)
        assert value(samples, "mailgw_queue_depth", state="ready") == 1
        assert value(samples, "mailgw_queue_depth", state="dead_letters") == 1
        assert value(samples, "mailgw_queue_depth", state="in_flight") == 0
    finally:
        watcher.cancel()


async def test_watching_survives_redis_out_of_reach(caplog: pytest.LogCaptureFixture) -> None:
    unreachable = Redis(port=free_port(), retry=None)
    queue = JobQueue(unreachable, QueueOptions(), SystemClock())
    attempts = 0
    depths = queue.depths

    async def counted() -> Any:
        nonlocal attempts
        attempts += 1
        return await depths()

    queue.depths = counted  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="gateway.depth_metrics"):
        watcher = asyncio.create_task(watch_queue_depths(queue, interval=0.05))
        for _ in range(100):
            if attempts >= 3:
                break
            await asyncio.sleep(0.02)
        assert not watcher.done()
        watcher.cancel()
    await unreachable.aclose()
    assert attempts >= 3
    # The parts that need Redis say it once (gateway/outage.py); the watcher says nothing.
    assert caplog.records == []


def test_disabled_metrics_are_not_served() -> None:
    assert metrics.serve_metrics(settings_on(free_port(), enabled=False)) is None


def test_an_address_in_use_is_a_configuration_problem() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as raised:
            metrics.serve_metrics(settings_on(port), "/etc/mailgw/mailgw.toml")
    [problem] = raised.value.problems
    assert (problem.file, problem.key) == ("/etc/mailgw/mailgw.toml", "metrics.listen")
    assert "in use" in problem.message


def test_metrics_settings() -> None:
    defaults = Settings().metrics
    assert defaults.enabled is True
    assert defaults.listen == Endpoint("127.0.0.1", 9108)
    assert settings_on(9200).metrics.listen == Endpoint("127.0.0.1", 9200)
    with pytest.raises(ValidationError, match="host:port"):
        Settings.model_validate({"metrics": {"listen": "localhost"}})
    with pytest.raises(ValidationError, match="valid boolean"):
        Settings.model_validate({"metrics": {"enabled": "yes"}})
    with pytest.raises(ValidationError, match="Extra inputs"):
        Settings.model_validate({"metrics": {"port": 9108}})
