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
# Twilio SharedKeys (made up): the new one, and the one being rotated out.
NEW_KEY = "webhooks_sharedkey_01jz8x5k2m4n6p8q0r2s4t6v8w"
OLD_KEY = "webhooks_sharedkey_01hy7w4j1l3m5n7p9q1r3s5t7u"
SHARED_KEYS = {
    NEW_KEY: "bmV3IHNoYXJlZCBrZXkgc2VjcmV0IGZvciB0ZXN0cw",
    OLD_KEY: "b2xkIGtleSBzZWNyZXQ",
}


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
        self,
        path: str,
        fields: dict[str, str],
        signature: str | None = None,
        sign_url: str = "",
        *,
        secret: str = TOKEN,
        algorithm: str | None = None,
        settings: str | None = None,
    ) -> tuple[int, str]:
        """POST `fields`, signed by twilio's own validator with `secret` and `algorithm`
        (HMAC_SHA1 by default) unless `signature` is given, with `settings` as the
        X-Twilio-Webhooks-Signature-Settings header if given."""
        url = f"{self.url}/sms/twilio/{path}"
        if signature is None:
            validator = RequestValidator(secret)
            signature = validator.compute_signature(sign_url or url, fields, algorithm=algorithm)
        headers = {"X-Twilio-Signature": signature} if signature else {}
        if settings is not None:
            headers["X-Twilio-Webhooks-Signature-Settings"] = settings
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
    for key, secret in SHARED_KEYS.items():
        (tmp_path / f"{key}.secret").write_text(secret + "\n")
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
[[sms.twilio.shared_keys]]
id = "{NEW_KEY}"
secret_file = "{NEW_KEY}.secret"
[[sms.twilio.shared_keys]]
id = "{OLD_KEY}"
secret_file = "{OLD_KEY}.secret"
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


def settings(key: str, algorithm: str = "HMAC_SHA256") -> str:
    """The X-Twilio-Webhooks-Signature-Settings header of a Webhook Setting's signature."""
    return f"key={key},algorithm={algorithm}"


async def test_webhooks_a_shared_key_signs_are_accepted(site: Site, clock: FixedClock) -> None:
    """HMAC-SHA256 (or HMAC-SHA1) keyed with the SharedKey the settings header names, as a
    Twilio Webhook Setting signs them; the key being rotated out still counts."""
    await site.gateway.run(appointment_job("b1", "appointment.booked", START))
    await run_until(site.gateway, clock, START - timedelta(hours=2))
    [request] = site.api.requests
    report = {"MessageSid": request.sid, "MessageStatus": "delivered"}
    sha256 = {"algorithm": "HMAC_SHA256", "settings": settings(NEW_KEY)}
    assert await site.post("status", report, secret=SHARED_KEYS[NEW_KEY], **sha256) == (204, "")
    stop = {"From": NUMBER, "To": "+15005550006", "Body": "STOP"}
    old = {"algorithm": "HMAC_SHA256", "settings": settings(OLD_KEY)}
    code, body = await site.post("incoming", stop, secret=SHARED_KEYS[OLD_KEY], **old)
    assert code == 200 and body.endswith("<Response/>")
    assert await site.gateway.queue.redis.hexists("mailgw:smsoptout", NUMBER)
    start = {**stop, "Body": "START"}
    sha1 = {"algorithm": "HMAC_SHA1", "settings": settings(NEW_KEY, "HMAC_SHA1")}
    assert (await site.post("incoming", start, secret=SHARED_KEYS[NEW_KEY], **sha1))[0] == 200
    statuses = [e["status"] for e in await site.sms_events()]
    assert statuses == ["sent", "delivered", "opted_out", "opted_in"]
    # and the auth token's HMAC-SHA1, without the header, as before
    assert (await site.incoming("STOP"))[0] == 200


async def test_forged_or_stale_signatures_of_either_scheme_are_refused(site: Site) -> None:
    stop = {"From": NUMBER, "To": "+15005550006", "Body": "STOP"}
    new = SHARED_KEYS[NEW_KEY]
    refused: list[dict[str, Any]] = [
        # a SharedKey no longer listed (rotated out), or a secret that is not the key's
        {"secret": new, "algorithm": "HMAC_SHA256", "settings": settings("webhooks_sharedkey_x")},
        {"secret": "bm90IHRoZSBrZXk", "algorithm": "HMAC_SHA256", "settings": settings(NEW_KEY)},
        # the auth token in place of the SharedKey the header names
        {"secret": TOKEN, "algorithm": "HMAC_SHA256", "settings": settings(NEW_KEY)},
        # HMAC-SHA256 without the header that announces it, or announced as HMAC-SHA1
        {"secret": new, "algorithm": "HMAC_SHA256"},
        {"secret": TOKEN, "algorithm": "HMAC_SHA256"},
        {"secret": new, "algorithm": "HMAC_SHA256", "settings": settings(NEW_KEY, "HMAC_SHA1")},
        # an algorithm Twilio does not sign with; a header that names no key
        {"secret": new, "algorithm": "HMAC_SHA256", "settings": settings(NEW_KEY, "HMAC_MD5")},
        {"secret": new, "algorithm": "HMAC_SHA256", "settings": "algorithm=HMAC_SHA256"},
        # an auth token that is no longer the account's
        {"secret": "0123456789abcdef0123456789abcdef"},
        # signed for another URL
        {
            "secret": new,
            "algorithm": "HMAC_SHA256",
            "settings": settings(NEW_KEY),
            "sign_url": "https://evil.example/sms/twilio/incoming",
        },
    ]
    for case in refused:
        assert (await site.post("incoming", stop, **case))[0] == 403, case
    # signed, then a field changed on the way
    url = f"{site.url}/sms/twilio/incoming"
    signature = RequestValidator(new).compute_signature(url, stop, algorithm="HMAC_SHA256")
    changed = {**stop, "From": "+33698765432"}
    code, body = await site.post(
        "incoming", changed, signature=signature, settings=settings(NEW_KEY)
    )
    assert code == 403
    assert body == (
        f"forged Twilio incoming message: X-Twilio-Signature does not match {url} signed "
        f"with SharedKey '{NEW_KEY}' (HMAC-SHA256)"
    )
    code, body = await site.post("incoming", stop, **refused[0])
    assert body == (
        "forged Twilio incoming message: signed with Twilio SharedKey 'webhooks_sharedkey_x', "
        "which [sms.twilio] shared_keys lacks"
    )
    assert await site.gateway.queue.redis.hlen("mailgw:smsoptout") == 0
    assert await site.sms_events() == []
