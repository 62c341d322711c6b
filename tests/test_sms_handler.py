"""`sms.send` jobs through the real worker, Redis and a loopback Twilio, SMSC or Kannel, when
the provider's answer is lost (the text is found, not sent again; its reports find it) and
when it throttles (its Retry-After bounded, the attempts limited)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.conftest import FixedClock
from tests.gateway_harness import Gateway
from tests.redis_server import free_port
from tests.smsc import PASSWORD, SYSTEM_ID, running_smsc
from tests.smtp_server import SmtpServer
from tests.test_planner import NOW
from tests.test_sms import sms_job
from tests.test_sms_providers import gateway_with, kannel_for
from tests.twilio_api import Scripted, TwilioApi

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f3a1c0ffee0ddba11c0ffee0ddba11f3"
NUMBER = "+33612345678"

MakeGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW.timestamp())


@pytest.fixture
async def api(clock: FixedClock) -> AsyncIterator[TwilioApi]:
    # The stand-in dates its messages on the test's clock, as Twilio would on the real one.
    async with TwilioApi(SID, TOKEN, now=clock.now) as server:
        yield server


@pytest.fixture
async def twilio_gateway(
    tmp_path: Path,
    redis_url: str,
    redis: Redis,
    smtp: SmtpServer,
    clock: FixedClock,
    api: TwilioApi,
) -> AsyncIterator[MakeGateway]:
    """Gateways sending through `api`, serving the webhook its status callbacks go to."""
    made: list[Gateway] = []

    async def make(**twilio: str) -> Gateway:
        (tmp_path / "twilio.token").write_text(TOKEN + "\n")
        port = free_port()
        extra = "".join(f'{key} = "{value}"\n' for key, value in twilio.items())
        gateway = gateway_with(tmp_path / f"gw{len(made)}", redis_url, redis, smtp, clock, f"""
[sms]
provider = "twilio"
webhook_listen = "127.0.0.1:{port}"
webhook_url = "http://127.0.0.1:{port}"
[sms.twilio]
account_sid = "{SID}"
auth_token_file = "{tmp_path}/twilio.token"
from_number = "+15005550006"
base_url = "{api.url}"
{extra}""")  # fmt: skip
        gateway.serve_webhook(port)
        made.append(gateway)
        return gateway

    yield make
    await api.reported()
    for gateway in made:
        await gateway.close()


async def settle(gateway: Gateway, clock: FixedClock, rounds: int = 40) -> int:
    """Run the jobs and their retries as their times come, at most `rounds` retry times;
    returns how many came."""
    redis = gateway.queue.redis
    for done in range(rounds):
        await gateway.drain()
        due = [
            score
            for key in ("mailgw:scheduled", "mailgw:retry")
            for _, score in await redis.zrange(key, 0, 0, withscores=True)
        ]
        if not due:
            return done
        clock.current = max(clock.current, min(due) / 1000)
        await gateway.queue.promote_due(100)
    return rounds


async def job_events(gateway: Gateway, job: str) -> list[dict[str, Any]]:
    return [e for e in await gateway.events() if e["job"] == job]


# --- the answer lost ---


@pytest.mark.parametrize("lost", ["dropped", "late"])
async def test_a_text_whose_answer_is_lost_is_found_at_twilio_and_not_sent_again(
    twilio_gateway: MakeGateway, api: TwilioApi, clock: FixedClock, lost: str
) -> None:
    gateway = await twilio_gateway(timeout="0.3s")
    api.report_status = "delivered"
    if lost == "dropped":
        api.drop_next()  # taken, then the connection closed before the answer
    else:
        api.slow_next(1.0)  # taken, answered after the gateway stopped waiting
    await gateway.run(sms_job("s1", to="06 12 34 56 78", text="Bonjour Zoé"))
    [deferred] = await job_events(gateway, "s1")
    assert deferred["status"] == "deferred"
    assert "may already be out" in deferred["reason"]
    # Twilio reports on the first copy before the gateway knows its sid.
    await api.reported()

    await settle(gateway, clock)
    [taken] = api.requests
    assert len(api.posts) == 1
    assert [q["To"] for q in api.lookups] == [NUMBER]
    outcomes = {e["status"]: e for e in await job_events(gateway, "s1")}
    assert outcomes.keys() == {"deferred", "sent", "delivered"}
    assert outcomes["sent"]["message_id"] == taken.sid
    assert "found at twilio" in outcomes["sent"]["reason"]
    assert outcomes["delivered"]["message_id"] == taken.sid
    assert outcomes["delivered"]["recipient"] == NUMBER


async def test_an_answer_lost_at_the_last_attempt_is_looked_for_at_once(
    twilio_gateway: MakeGateway, api: TwilioApi, clock: FixedClock
) -> None:
    """No attempt comes after the last one to ask Twilio: it asks at once."""
    gateway = await twilio_gateway()
    api.fail_next(503, 20503, "Service Unavailable", times=9)
    api.drop_next()
    await gateway.run(sms_job("s7", to=NUMBER, text="Bonjour"))
    await settle(gateway, clock)
    [taken] = api.requests
    assert len(api.posts) == 10 and len(api.lookups) == 1
    events = await job_events(gateway, "s7")
    assert [e["status"] for e in events] == ["deferred"] * 9 + ["sent"]
    assert events[-1]["message_id"] == taken.sid


async def test_a_text_lost_before_twilio_took_it_is_sent_once_after_the_lookup(
    twilio_gateway: MakeGateway, api: TwilioApi, clock: FixedClock
) -> None:
    gateway = await twilio_gateway()
    api.drop_next(accepted=False)
    await gateway.run(sms_job("s2", to=NUMBER, text="Bonjour"))
    await settle(gateway, clock)
    [taken] = api.requests
    assert len(api.posts) == 2 and len(api.lookups) == 1
    [sent] = [e for e in await job_events(gateway, "s2") if e["status"] == "sent"]
    assert sent["message_id"] == taken.sid


async def test_when_twilio_cannot_be_asked_the_text_waits_and_is_not_sent_again(
    twilio_gateway: MakeGateway, api: TwilioApi, clock: FixedClock
) -> None:
    gateway = await twilio_gateway()
    api.drop_next()
    api.fail_lookups(503, 20503, "Service Unavailable")
    await gateway.run(sms_job("s3", to=NUMBER, text="Bonjour"))
    await settle(gateway, clock)
    [taken] = api.requests
    assert len(api.posts) == 1 and len(api.lookups) == 2
    events = await job_events(gateway, "s3")
    assert [e["status"] for e in events] == ["deferred", "deferred", "sent"]
    assert "may already be out" in events[1]["reason"]
    assert "could not be asked" in events[1]["reason"]
    assert events[2]["message_id"] == taken.sid


async def test_another_jobs_identical_text_is_not_taken_for_this_one(
    twilio_gateway: MakeGateway, api: TwilioApi, clock: FixedClock
) -> None:
    gateway = await twilio_gateway()
    await gateway.run(sms_job("first", to=NUMBER, text="Bonjour"))
    api.drop_next(accepted=False)
    await gateway.run(sms_job("second", to=NUMBER, text="Bonjour"))
    await settle(gateway, clock)
    first, second = api.requests
    [sent] = [e for e in await job_events(gateway, "second") if e["status"] == "sent"]
    assert sent["message_id"] == second.sid != first.sid


async def test_an_smsc_that_never_answers_a_submit_gets_no_second_copy(
    tmp_path: Path, redis_url: str, redis: Redis, smtp: SmtpServer, clock: FixedClock
) -> None:
    """SMPP cannot be asked what it took without the id its lost answer carried: the text is
    not sent again, and the job says why."""
    (tmp_path / "smpp.password").write_text(PASSWORD + "\n")
    async with running_smsc() as smsc:
        gateway = gateway_with(tmp_path, redis_url, redis, smtp, clock, f"""
[sms]
provider = "smpp"
[sms.smpp]
host = "127.0.0.1"
port = {smsc.port}
system_id = "{SYSTEM_ID}"
password_file = "smpp.password"
source_addr = "Atelier"
response_timeout = "0.3s"
""")  # fmt: skip
        try:
            await smsc.control("silence", count=1)
            await gateway.run(sms_job("s4", to=NUMBER, text="Bonjour"))
            await smsc.event("submit_sm")
            await settle(gateway, clock)
            await smsc.no_event("submit_sm", 0.5)
        finally:
            await gateway.close()
    statuses = [e["status"] for e in await job_events(gateway, "s4")]
    assert statuses == ["deferred", "failed"]
    [(_, dead)] = await redis.xrange("mailgw:dead")
    assert "may already be out" in dead["reason"] and "not sent again" in dead["reason"]


@asynccontextmanager
async def answer_dropping_proxy(port: int) -> AsyncIterator[tuple[int, list[int]]]:
    """A loopback port passing HTTP to `port`, except that the first request's answer is
    read from there and not passed back: its connection is closed instead. Yields the port
    and the list of answers dropped (their length)."""
    dropped: list[int] = []

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        if not dropped:
            upstream_writer.write(await reader.readuntil(b"\r\n\r\n"))
            answer = await upstream_reader.read(65536)
            dropped.append(len(answer))
            upstream_writer.close()
            writer.transport.abort()
            return
        await asyncio.gather(
            pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True
        )

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], dropped


async def test_a_kannel_text_whose_answer_is_lost_is_known_by_its_report_and_not_sent_again(
    tmp_path: Path, redis_url: str, redis: Redis, smtp: SmtpServer, clock: FixedClock
) -> None:
    """Kannel cannot be asked what it took, but its delivery reports carry the text's
    reference: the first copy's report finds the text, which is then not sent again."""
    (tmp_path / "kannel.password").write_text("kannel-pass\n")
    port = free_port()
    table = f"""
[sms]
provider = "kannel"
webhook_listen = "127.0.0.1:{port}"
webhook_url = "http://127.0.0.1:{port}"
[sms.kannel]
password_file = "{tmp_path}/kannel.password"
sender = "Atelier"
"""
    kannel = await kannel_for(tmp_path, redis_url, redis, smtp, clock, table)
    try:
        async with answer_dropping_proxy(kannel.sendsms_port) as (proxy, dropped):
            sendsms = f'sendsms_url = "http://127.0.0.1:{proxy}/cgi-bin/sendsms"\n'
            gateway = gateway_with(tmp_path / "gw", redis_url, redis, smtp, clock, table + sendsms)
            gateway.serve_webhook(port)
            try:
                await gateway.run(sms_job("k1", to=NUMBER, text="Bonjour"))
                assert dropped and dropped[0] > 0
                # (the first copy's report may be in already)
                [deferred] = [
                    e for e in await job_events(gateway, "k1") if e["status"] == "deferred"
                ]
                assert "may already be out" in deferred["reason"]
                await kannel.smsc.text_to(NUMBER)
                # the first copy's report, matched by its reference
                async with asyncio.timeout(10):
                    while not [
                        e for e in await job_events(gateway, "k1") if e["status"] == "delivered"
                    ]:
                        await asyncio.sleep(0.05)
                await settle(gateway, clock)
                await asyncio.sleep(1)
            finally:
                await gateway.close()
    finally:
        kannel.stop()
    assert [sms.text for sms in kannel.smsc.received] == ["Bonjour"]
    outcomes = {e["status"]: e for e in await job_events(gateway, "k1")}
    assert outcomes.keys() == {"deferred", "delivered", "sent"}
    assert outcomes["sent"]["message_id"] == f"k1/{NUMBER}"
    assert "a delivery report of kannel names it" in outcomes["sent"]["reason"]


# --- throttled ---


@pytest.mark.parametrize(
    ("retry_after", "least", "most"),
    [
        # never sooner than the queue's backoff (30 s, up to 20 % less at random) ...
        ("0", 24, 30),
        ("-5", 24, 30),
        ("soon", 24, 30),
        ("12", 24, 30),
        # ... a longer wait asked is kept ...
        ("600", 600, 600),
        # ... up to queue.backoff_max (1 h)
        ("100000000", 3600, 3600),
    ],
)
async def test_retry_after_is_bounded_by_the_queues_backoff(
    twilio_gateway: MakeGateway,
    api: TwilioApi,
    clock: FixedClock,
    retry_after: str,
    least: float,
    most: float,
) -> None:
    gateway = await twilio_gateway()
    api.fail_next(429, 20429, "Too Many Requests", {"Retry-After": retry_after})
    await gateway.run(sms_job("s5", to=NUMBER, text="Bonjour"))
    [(_, due)] = await gateway.queue.redis.zrange("mailgw:retry", 0, -1, withscores=True)
    assert least <= due / 1000 - clock.now() <= most


@pytest.mark.parametrize("retry_after", ["0", "100000000"])
async def test_a_provider_throttling_for_ever_is_tried_max_attempts_times(
    twilio_gateway: MakeGateway, api: TwilioApi, clock: FixedClock, retry_after: str
) -> None:
    gateway = await twilio_gateway()
    api.policy = lambda form: Scripted(
        429, 20429, "Too Many Requests", {"Retry-After": retry_after}
    )
    await gateway.run(sms_job("s6", to=NUMBER, text="Bonjour"))
    await settle(gateway, clock, rounds=30)
    assert len(api.posts) == gateway.config.settings.queue.max_attempts == 10
    assert [e["status"] for e in await job_events(gateway, "s6")][-1] == "failed"
    [(_, dead)] = await gateway.queue.redis.xrange("mailgw:dead")
    assert dead["reason"].startswith("gave up after 10 attempts")
