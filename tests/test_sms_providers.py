"""Issue 5's finish line, through each provider: an SMS reminder of a `growing` account,
booked for a client who wrote `06 12 34 56 78`, reaches the provider as +33612345678
with the default text, through the planner, the queue and the handler."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from gateway.config import load_config
from outbound.sms.kannel import KannelOptions, kannel_config
from outbound.sms.segments import gsm7_bytes
from outbound.sms.service import provider_context
from outbound.sms.text import default_text
from tests.conftest import FixedClock
from tests.gateway_harness import Gateway, write_config
from tests.kannel_server import Kannel, start_kannel
from tests.redis_server import free_port
from tests.smsc import PASSWORD, SYSTEM_ID, running_smsc
from tests.smtp_server import SmtpServer
from tests.test_planner import NOW, appointment_job, run_until
from tests.test_sms import START
from tests.twilio_api import TwilioApi

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f3a1c0ffee0ddba11c0ffee0ddba11f3"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW.timestamp())


EXPECTED = default_text(
    business="L'Atelier d'Élodie & Fils",
    type_name="Coupe femme",
    calendar="Élodie",
    start=START,
    zone=ZoneInfo("Europe/Paris"),
    locale="fr",
)


def gateway_with(
    tmp_path: Path, redis_url: str, redis: Redis, smtp: SmtpServer, clock: FixedClock, sms: str
) -> Gateway:
    tmp_path.mkdir(exist_ok=True)
    config = write_config(tmp_path, redis_url, smtp.port)
    with config.open("a", encoding="utf-8") as file:
        file.write(sms)
    return Gateway(load_config(config), redis, clock)


async def kannel_for(
    tmp_path: Path, redis_url: str, redis: Redis, smtp: SmtpServer, clock: FixedClock, table: str
) -> Kannel:
    """A real Kannel set up as the gateway's `[sms]` `table` configures it (kannel_config)."""
    probe = gateway_with(tmp_path / "probe", redis_url, redis, smtp, clock, table)
    await probe.close()
    assert isinstance(probe.config.sms_options, KannelOptions)
    groups = kannel_config(probe.config.sms_options, provider_context(probe.config.settings))
    (tmp_path / "kannel").mkdir()
    return start_kannel(tmp_path / "kannel", groups)


async def remind(gateway: Gateway, clock: FixedClock) -> None:
    """Book the example appointment and let time run past its SMS reminder (3 h before)."""
    await gateway.run(appointment_job("b1", "appointment.booked", START))
    await run_until(gateway, clock, START - timedelta(hours=2))
    # (Kannel's delivery report may be in already: only what the handler wrote is read.)
    job = "b1/reminder/0/sms/+33612345678"
    [event] = [e for e in await gateway.events() if e["job"] == job and e["status"] != "delivered"]
    assert (event["status"], event["recipient"]) == ("sent", "+33612345678"), event


async def test_file(gateway: Gateway, clock: FixedClock) -> None:
    await remind(gateway, clock)
    [text] = gateway.texts()
    assert (text["to"], text["text"]) == ("+33612345678", EXPECTED)


async def test_twilio(
    tmp_path: Path, redis_url: str, redis: Redis, smtp: SmtpServer, clock: FixedClock
) -> None:
    (tmp_path / "twilio.token").write_text(TOKEN + "\n")
    async with TwilioApi(SID, TOKEN) as api:
        gateway = gateway_with(tmp_path, redis_url, redis, smtp, clock, f"""
[sms]
provider = "twilio"
webhook_url = "https://sms.example.com"
[sms.twilio]
account_sid = "{SID}"
auth_token_file = "twilio.token"
from_number = "+15005550006"
base_url = "{api.url}"
""")  # fmt: skip
        try:
            await remind(gateway, clock)
        finally:
            await gateway.close()
    [request] = api.requests
    assert request.form["To"] == "+33612345678"
    assert request.form["Body"] == EXPECTED
    assert request.form["StatusCallback"] == "https://sms.example.com/sms/twilio/status"


async def test_smpp(
    tmp_path: Path, redis_url: str, redis: Redis, smtp: SmtpServer, clock: FixedClock
) -> None:
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
""")  # fmt: skip
        try:
            await remind(gateway, clock)
            submit = await smsc.event("submit_sm")
        finally:
            await gateway.close()
    assert (submit["destination_addr"], submit["dest_addr_ton"]) == ("33612345678", 1)
    assert (submit["data_coding"], bytes.fromhex(submit["short_message"])) == (
        0,
        gsm7_bytes(EXPECTED),
    )


async def test_kannel(
    tmp_path: Path, redis_url: str, redis: Redis, smtp: SmtpServer, clock: FixedClock
) -> None:
    """Through a real Kannel (bearerbox, smsbox, fakesmsc), whose delivery report and the
    client's STOP come back to the gateway's own webhook."""
    (tmp_path / "kannel.password").write_text("kannel-pass\n")
    (tmp_path / "kannel.secret").write_text("0123456789abcdefghijklmnopqrstuvwxyz\n")
    port = free_port()
    table = f"""
[sms]
provider = "kannel"
webhook_listen = "127.0.0.1:{port}"
webhook_url = "http://127.0.0.1:{port}"
[sms.kannel]
password_file = "{tmp_path}/kannel.password"
callback_secret_file = "{tmp_path}/kannel.secret"
sender = "Atelier"
"""
    kannel = await kannel_for(tmp_path, redis_url, redis, smtp, clock, table)
    try:
        sendsms = f'sendsms_url = "{kannel.sendsms_url}"\n'
        gateway = gateway_with(tmp_path / "gw", redis_url, redis, smtp, clock, table + sendsms)
        gateway.serve_webhook(port)
        try:
            await remind(gateway, clock)
            sms = await kannel.smsc.text_to("+33612345678")
            assert (sms.sender, sms.text) == ("Atelier", EXPECTED)

            async def reported(status: str) -> dict[str, Any] | None:
                events = await gateway.events()
                return next((e for e in events if e["status"] == status), None)

            delivered = await eventually_async(lambda: reported("delivered"))
            assert delivered["job"] == "b1/reminder/0/sms/+33612345678"
            await kannel.smsc.send("+33612345678", "Atelier", "STOP")
            opted_out = await eventually_async(lambda: reported("opted_out"))
            assert opted_out["recipient"] == "+33612345678"
        finally:
            await gateway.close()
    finally:
        kannel.stop()


async def eventually_async(
    probe: Callable[[], Awaitable[dict[str, Any] | None]], within: float = 10.0
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while (found := await probe()) is None:
        assert asyncio.get_running_loop().time() < deadline, "never came"
        await asyncio.sleep(0.05)
    return found
