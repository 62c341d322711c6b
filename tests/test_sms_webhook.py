"""The SMS webhook over HTTP with the twilio provider: signed delivery reports and
clients' texts (STOP, START, anything else), and what unsigned or forged ones get."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import treq
from redis.asyncio import Redis
from twilio.request_validator import RequestValidator
from twisted.internet.defer import Deferred

from gateway.config import load_config
from tests.conftest import FixedClock
from tests.gateway_harness import Gateway, write_config
from tests.redis_server import free_port
from tests.smtp_server import SmtpServer
from tests.test_planner import NOW, appointment_job, run_until
from tests.test_sms import START
from tests.twilio_api import TwilioApi

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f3a1c0ffee0ddba11c0ffee0ddba11f3"
NUMBER = "+33612345678"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW.timestamp())


class Site:
    """The gateway with the twilio provider, its webhook listening on loopback."""

    def __init__(self, gateway: Gateway, api: TwilioApi, url: str) -> None:
        self.gateway = gateway
        self.api = api
        self.url = url

    async def post(
        self, path: str, fields: dict[str, str], signature: str | None = None, sign_url: str = ""
    ) -> tuple[int, str]:
        url = f"{self.url}/sms/twilio/{path}"
        if signature is None:
            signature = RequestValidator(TOKEN).compute_signature(sign_url or url, fields)
        headers = {"X-Twilio-Signature": signature} if signature else {}
        response = await _wait(treq.post(url, data=fields, headers=headers))
        return response.code, (await _wait(response.text())).strip()

    async def incoming(self, body: str) -> tuple[int, str]:
        return await self.post("incoming", {"From": NUMBER, "To": "+15005550006", "Body": body})

    async def sms_events(self) -> list[dict[str, Any]]:
        return [e for e in await self.gateway.events() if e.get("channel") == "sms"]


@pytest.fixture
async def site(
    tmp_path: Path, redis_url: str, redis: Redis, smtp: SmtpServer, clock: FixedClock
) -> AsyncIterator[Site]:
    (tmp_path / "twilio.token").write_text(TOKEN + "\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with TwilioApi(SID, TOKEN) as api:
        config = write_config(tmp_path, redis_url, smtp.port)
        with config.open("a", encoding="utf-8") as file:
            file.write(f"""
[sms]
provider = "twilio"
webhook_url = "{url}"
answer_interval = "1h"
[sms.twilio]
account_sid = "{SID}"
auth_token_file = "twilio.token"
from_number = "+15005550006"
base_url = "{api.url}"
""")  # fmt: skip
        gateway = Gateway(load_config(config), redis, clock)
        gateway.serve_webhook(port)
        try:
            yield Site(gateway, api, url)
        finally:
            await gateway.close()


async def _wait(deferred: Deferred[Any]) -> Any:
    return await deferred.asFuture(asyncio.get_running_loop())


async def test_delivery_reports_become_events_of_the_text(site: Site, clock: FixedClock) -> None:
    await site.gateway.run(appointment_job("b1", "appointment.booked", START))
    await run_until(site.gateway, clock, START - timedelta(hours=2))
    [request] = site.api.requests
    sent = request.sid
    assert (await site.post("status", {"MessageSid": sent, "MessageStatus": "sent"})) == (204, "")
    assert await site.post("status", {"MessageSid": sent, "MessageStatus": "delivered"}) == (
        204,
        "",
    )
    events = await site.sms_events()
    assert [(e["status"], e["message_id"]) for e in events] == [
        ("sent", sent),
        ("delivered", sent),
    ]
    assert events[1]["job"] == events[0]["job"] == f"b1/reminder/0/sms/{NUMBER}"
    assert events[1]["appointment"] == "appt-7"


async def test_stop_over_the_webhook_stops_the_next_text(site: Site, clock: FixedClock) -> None:
    await site.gateway.run(appointment_job("b1", "appointment.booked", START))
    code, body = await site.incoming("stop")
    assert code == 200 and body.endswith("<Response/>")
    later = appointment_job("b2", "appointment.booked", START + timedelta(days=1))
    later["appointment"]["id"] = "appt-8"
    await site.gateway.run(later)
    await run_until(site.gateway, clock, START + timedelta(days=2))
    assert site.api.requests == []
    statuses = [(e["status"], e.get("appointment")) for e in await site.sms_events()]
    # The waiting one was dropped at the STOP; the one planned after it is not sent.
    assert statuses == [("opted_out", None), ("suppressed", "appt-8")]

    assert (await site.incoming("Start"))[0] == 200
    third = appointment_job("b3", "appointment.booked", START + timedelta(days=3))
    third["appointment"]["id"] = "appt-9"
    await site.gateway.run(third)
    await run_until(site.gateway, clock, START + timedelta(days=4))
    assert [r.form["To"] for r in site.api.requests] == [NUMBER]


async def test_other_texts_get_one_answer_per_interval(site: Site, clock: FixedClock) -> None:
    for _ in range(2):
        assert (await site.incoming("Je serai en retard"))[0] == 200
    clock.advance(3601)
    assert (await site.incoming("Toujours en retard"))[0] == 200
    answers = [r.form["Body"] for r in site.api.requests]
    assert (
        answers
        == [
            "This number does not read replies. For any question, please contact the business"
            " directly."
        ]
        * 2
    )
    assert await site.sms_events() == []


async def test_unsigned_forged_and_unknown_callbacks_are_refused(site: Site) -> None:
    fields = {"From": NUMBER, "To": "+15005550006", "Body": "STOP"}
    assert (await site.post("incoming", fields, signature=""))[0] == 403
    assert (await site.post("incoming", fields, signature="bm90IGEgc2lnbmF0dXJl"))[0] == 403
    elsewhere = await site.post("incoming", fields, sign_url="https://evil.example/sms")
    assert elsewhere[0] == 403
    assert (await site.post("status", {"MessageStatus": "delivered"}))[0] == 400
    assert (await site.post("elsewhere", fields))[0] == 404
    assert await site.gateway.queue.redis.hlen("mailgw:smsoptout") == 0
    assert await site.sms_events() == []


async def test_provider_refusals(site: Site, clock: FixedClock) -> None:
    job = {"v": 1, "kind": "sms.send", "account": "atelier-elodie", "to": "06 12 34 56 78"}
    site.api.fail_next(503, None, "Service Unavailable")
    await site.gateway.run({**job, "id": "s1", "text": "Bonjour"})
    retrying = await site.gateway.queue.redis.zcard("mailgw:retry")
    assert retrying == 1 and site.api.requests == []
    clock.advance(3600)
    await site.gateway.queue.promote_due(10)
    await site.gateway.drain()
    assert len(site.api.requests) == 1

    site.api.fail_next(400, 21610, "Attempt to send to unsubscribed recipient")
    await site.gateway.run({**job, "id": "s2", "text": "Bonjour"})
    events = await site.sms_events()
    assert [(e["job"], e["status"]) for e in events] == [("s1", "sent"), ("s2", "failed")]
    [deferred] = [e for e in await site.gateway.events() if e["status"] == "deferred"]
    assert deferred["job"] == "s1" and "503" in deferred["reason"]
    assert "21610" in events[-1]["reason"]
    assert await site.gateway.queue.redis.hexists("mailgw:smsoptout", NUMBER)
