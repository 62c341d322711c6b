"""Issue 6's finish line: a client's reply to a reminder, sent with swaks, is forwarded to
the calendar's reply-to address (to the owner when the calendar has none), passing DKIM
and ARC verification by Mail::DKIM and mailauth; a forged token and a relay attempt are
refused at RCPT; a DSN for a sent notification suppresses the address."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import treq
from redis.asyncio import Redis

from gateway.config import load_config
from inbound import smtp_replies as replies
from inbound.router import InboundRouter
from inbound.service import InboundService
from outbound.dkim import load_keys
from tests.conftest import DnsZone, FixedClock
from tests.dkim_verifiers import (
    mail_dkim_arc,
    mail_dkim_verdicts,
    mailauth_authenticate,
    publish,
    results,
)
from tests.gateway_harness import DOMAIN, Gateway, write_config
from tests.redis_server import free_port
from tests.smtp_server import SmtpServer
from tests.test_inbound_smtp import swaks

ROOT = Path(__file__).resolve().parent
CLIENT = "zoe@example.com"


class Inbound:
    """The gateway with its inbound side: SMTP server on a free port, router on demand."""

    def __init__(self, gateway: Gateway, service: InboundService, port: int, web_port: int) -> None:
        self.gateway = gateway
        self.service = service
        self.port = port
        self.web_port = web_port
        self.router: InboundRouter = service.router(
            gateway.outbound.transport, lambda: gateway.signer, lambda: gateway.config.bounce_rules
        )

    async def route(self) -> None:
        await self.service.queue.ensure_group()
        while entries := await self.service.queue.read("test", 10, 10):
            for entry, message, deliveries in entries:
                await self.router.process(entry, message, deliveries)

    async def notification(self, job_id: str, calendar: str) -> email.message.EmailMessage:
        """A reminder sent to the client; the message as the client got it."""
        sent = len(self.gateway_smtp.messages)
        await self.gateway.run(_reminder(job_id, calendar))
        [received] = self.gateway_smtp.messages[sent:]
        message: Any = email.message_from_bytes(received.data, policy=email.policy.default)
        return message

    gateway_smtp: SmtpServer


@pytest.fixture
async def inbound(
    tmp_path: Path,
    redis_url: str,
    redis: Redis,
    smtp: SmtpServer,
    clock: FixedClock,
    dns_zone: DnsZone,
) -> AsyncIterator[Inbound]:
    config = write_config(tmp_path, redis_url, smtp.port)
    port, web_port = free_port(), free_port()
    text = config.read_text(encoding="utf-8").replace(
        "[inbound]\n",
        f'[inbound]\nlisten = "127.0.0.1:{port}"\nweb_listen = "127.0.0.1:{web_port}"\n'
        # one process: the test's clock is this process's alone
        'hostname = "mx.acuityscheduling.com"\nprocesses = 1\n',
    )
    text += f'[relay.mx]\nresolvers = ["127.0.0.1:{dns_zone.port}"]\n'
    config.write_text(text, encoding="utf-8")
    gateway = Gateway(load_config(config), redis, clock)
    service = InboundService(
        lambda: gateway.config.settings, redis, gateway.queue.keys, gateway.directory,
        gateway.queue, clock,
    )  # fmt: skip
    await service.serve(str(config), config, redis_url)
    result = Inbound(gateway, service, port, web_port)
    result.gateway_smtp = smtp
    try:
        yield result
    finally:
        await service.close()
        await gateway.close()


def _reminder(job_id: str, calendar: str) -> dict[str, Any]:
    return json.loads(
        json.dumps(
            {
                "v": 1,
                "id": job_id,
                "kind": "email.send",
                "account": "atelier-elodie",
                "to": [CLIENT],
                "template": "reminder",
                "appointment": "appt-42",
                "context": {
                    "appointment": {
                        "id": "appt-42",
                        "calendar": calendar,
                        "type": "2001",
                        "start": "2026-11-24T13:30:00Z",
                        "end": "2026-11-24T14:15:00Z",
                        "timezone": "Europe/Paris",
                        "clients": [{"name": "Zoé Martin", "emails": [CLIENT]}],
                    }
                },
            }
        )
    )


async def test_a_reply_goes_to_the_calendar_and_passes_dkim_and_arc(
    inbound: Inbound, smtp: SmtpServer, dns_zone: DnsZone, mail_dkim: str, mailauth: str
) -> None:
    reminder = await inbound.notification("r1", "101")
    reply_to = reminder["Reply-To"].addresses[0].addr_spec
    answered = await swaks(
        inbound.port, "--from", CLIENT, "--to", reply_to,
        "--header", f"In-Reply-To: {reminder['Message-ID']}",
        "--header", "Subject: Re: rappel", "--body", "Je serai un peu en retard. Zoé",
    )  # fmt: skip
    assert answered.replies[-2].startswith("250 2.0.0 Ok: queued as"), answered.transcript
    await inbound.route()
    forwarded = smtp.messages[-1]
    assert forwarded.recipients == ["elodie.rdv@atelier-elodie.fr"]
    message: Any = email.message_from_bytes(forwarded.data, policy=email.policy.default)
    [sender] = message["From"].addresses
    assert sender.display_name == f"{CLIENT} via L'Atelier d'Élodie & Fils"
    assert sender.addr_spec == f"scheduling@{DOMAIN}"
    assert message["Reply-To"].addresses[0].addr_spec == CLIENT
    assert "Je serai un peu en retard" in message.get_body(("plain",)).get_content()
    [event] = [e for e in await inbound.gateway.events() if e["status"] == "forwarded"]
    assert (event["recipient"], event["account"]) == (
        "elodie.rdv@atelier-elodie.fr",
        "atelier-elodie",
    )

    keys = load_keys(inbound.gateway.config.settings.dkim_keys, generate=False)[DOMAIN]
    publish(dns_zone, *keys)
    dns_zone.set(f"_dmarc.{DOMAIN}", ["TXT", "v=DMARC1; p=reject"])
    assert results(mail_dkim_verdicts(mail_dkim, forwarded.data, dns_zone))["rsa-sha256"] == "pass"
    assert mail_dkim_arc(mail_dkim, forwarded.data, dns_zone)["result"] == "pass"
    seen = mailauth_authenticate(
        mailauth, forwarded.data, dns_zone, "127.0.0.1", "relay.test", forwarded.sender
    )
    assert (seen["arc"]["result"], seen["dmarc"]) == ("pass", "pass"), seen


async def test_without_a_calendar_address_the_owner_gets_it(
    inbound: Inbound, smtp: SmtpServer
) -> None:
    reminder = await inbound.notification("r2", "102")  # "Salon « Les Fils »": no reply_to
    reply_to = reminder["Reply-To"].addresses[0].addr_spec
    answered = await swaks(inbound.port, "--from", CLIENT, "--to", reply_to)
    assert answered.returncode == 0, answered.transcript
    await inbound.route()
    assert smtp.messages[-1].recipients == ["elodie@atelier-elodie.fr"]


async def test_forged_tokens_and_relaying_are_refused_at_rcpt(inbound: Inbound) -> None:
    reminder = await inbound.notification("r3", "101")
    local, domain = reminder["Reply-To"].addresses[0].addr_spec.split("@")
    forged = local[:-1] + ("a" if local[-1] != "a" else "b")
    refused = await swaks(inbound.port, "--to", f"{forged}@{domain}")
    assert replies.REJECT_UNKNOWN_RCPT in refused.replies
    relayed = await swaks(inbound.port, "--to", "someone@gmail.com")
    assert replies.REJECT_RELAY in relayed.replies
    await inbound.service.queue.ensure_group()
    assert await inbound.service.queue.read("test", 10, 10) == []


async def test_a_dsn_suppresses_the_address(inbound: Inbound, clock: FixedClock) -> None:
    reminder = await inbound.notification("r4", "101")
    token = reminder["Message-ID"].strip("<>").split("@")[0]
    dsn = (
        (ROOT / "samples" / "postfix-hard.eml")
        .read_text(encoding="utf-8")
        .replace("camille.martin@example.org", CLIENT)
        .replace("hq3xw7r2k5mzb4tnc6vd2fy7ga", token)
    )
    path = inbound.gateway.config.path
    assert path is not None
    sample = path.parent / "dsn.eml"
    sample.write_text(dsn, encoding="utf-8")
    bounced = await swaks(
        inbound.port, "--from", "", "--to", f"b-{token}@{DOMAIN}", "--data", str(sample)
    )
    assert bounced.returncode == 0, bounced.transcript
    await inbound.route()
    [entry] = await inbound.gateway.suppressions.entries()
    assert (entry.address, entry.reason, entry.bounce_class) == (
        CLIENT, "hard_bounce", "invalid_recipient"
    )  # fmt: skip
    [event] = [e for e in await inbound.gateway.events() if e["status"] == "bounced"]
    assert (event["job"], event["recipient"]) == ("r4", CLIENT)
    assert "User unknown" in event["reason"]
    assert event["bounce_class"] == "invalid_recipient"

    # The same report a day later: one entry, seen twice, first seen kept.
    first_seen = entry.first_seen
    clock.current += 86400
    again = await swaks(
        inbound.port, "--from", "", "--to", f"b-{token}@{DOMAIN}", "--data", str(sample)
    )
    assert again.returncode == 0, again.transcript
    await inbound.route()
    [entry] = await inbound.gateway.suppressions.entries()
    assert (entry.count, entry.first_seen) == (2, first_seen)
    assert entry.last_seen is not None and entry.last_seen > first_seen


async def test_a_dsn_refusing_the_message_not_the_address_suppresses_nothing(
    inbound: Inbound,
) -> None:
    reminder = await inbound.notification("r9", "101")
    token = token_of(reminder)
    text = (
        (ROOT / "samples" / "postfix-hard.eml")
        .read_text(encoding="utf-8")
        .replace("camille.martin@example.org", CLIENT)
        .replace("hq3xw7r2k5mzb4tnc6vd2fy7ga", token)
        .replace("5.1.1", "5.7.26")
    )
    path = Path(str(inbound.gateway.config.path)).parent / "dsn-auth.eml"
    path.write_text(text, encoding="utf-8")
    sent = await swaks(
        inbound.port, "--from", "", "--to", f"b-{token}@{DOMAIN}", "--data", str(path)
    )
    assert sent.returncode == 0, sent.transcript
    await inbound.route()
    assert await inbound.gateway.suppressions.entries() == []
    [event] = [e for e in await inbound.gateway.events() if e["status"] == "bounced"]
    assert (event["recipient"], event["bounce_class"]) == (CLIENT, "authentication")


async def test_a_plain_text_bounce_goes_the_way_of_a_dsn(inbound: Inbound) -> None:
    # Yahoo's failure notice is no RFC 3464 report: flufl.bounce finds its recipient.
    reminder = await inbound.notification("r4p", "101")
    token = reminder["Message-ID"].strip("<>").split("@")[0]
    bounce = (
        (ROOT / "samples" / "yahoo-plain.eml")
        .read_text(encoding="utf-8")
        .replace("someone@yahoo.com", CLIENT)
        .replace("hq3xw7r2k5mzb4tnc6vd2fy7ga", token)
    )
    path = inbound.gateway.config.path
    assert path is not None
    sample = path.parent / "yahoo-plain.eml"
    sample.write_text(bounce, encoding="utf-8")
    bounced = await swaks(
        inbound.port, "--from", "", "--to", f"b-{token}@{DOMAIN}", "--data", str(sample)
    )
    assert bounced.returncode == 0, bounced.transcript
    await inbound.route()
    [entry] = await inbound.gateway.suppressions.entries()
    assert entry.address == CLIENT
    [event] = [
        e for e in await inbound.gateway.events() if e["job"] == "r4p" and e["status"] != "sent"
    ]
    assert (event["status"], event["recipient"]) == ("bounced", CLIENT)
    assert "doesn't have a" in event["reason"]


async def sample_to(inbound: Inbound, name: str, token: str, to: str) -> None:
    """Send tests/samples/<name> about message `token`, from the null sender, to `to`."""
    text = (ROOT / "samples" / name).read_text(encoding="utf-8")
    text = text.replace("k7j6h5g4f3d2s7a6p5o4i3u2y7", token)
    text = text.replace("louise.bernard@mail.example.net", CLIENT)
    path = Path(str(inbound.gateway.config.path)).parent / name
    path.write_text(text, encoding="utf-8")
    sent = await swaks(inbound.port, "--from", "", "--to", to, "--data", str(path))
    assert sent.returncode == 0, sent.transcript
    await inbound.route()


def token_of(message: email.message.EmailMessage) -> str:
    return str(message["Message-ID"]).strip("<>").split("@")[0]


async def test_a_complaint_and_an_unsubscribe_stop_reminders_only(inbound: Inbound) -> None:
    reminder = await inbound.notification("r5", "101")
    token = token_of(reminder)
    await sample_to(inbound, "arf-abuse-headers.eml", token, f"b-{token}@{DOMAIN}")
    [complaint] = await inbound.gateway.suppressions.entries("atelier-elodie")
    assert (complaint.address, complaint.reason) == (CLIENT, "complaint")
    assert await inbound.gateway.suppressions.check("reminder", CLIENT, "atelier-elodie")
    assert (
        await inbound.gateway.suppressions.check("confirmation", CLIENT, "atelier-elodie") is None
    )

    await inbound.gateway.suppressions.remove(CLIENT, "atelier-elodie")
    [mailto] = [v for v in reminder["List-Unsubscribe"].split(",") if "mailto:" in v]
    address = mailto.strip(" <>").removeprefix("mailto:")
    sent = await swaks(inbound.port, "--from", CLIENT, "--to", address)
    assert sent.returncode == 0, sent.transcript
    await inbound.route()
    [entry] = await inbound.gateway.suppressions.entries("atelier-elodie")
    assert (entry.address, entry.reason) == (CLIENT, "unsubscribe")
    statuses = [e["status"] for e in await inbound.gateway.events() if e["job"] == "r5"]
    assert statuses == ["sent", "opted_out", "opted_out"]


async def test_a_reply_to_the_sender_address_is_routed_by_its_references(
    inbound: Inbound, smtp: SmtpServer
) -> None:
    reminder = await inbound.notification("r6", "102")
    answered = await swaks(
        inbound.port, "--from", CLIENT, "--to", f"scheduling@{DOMAIN}",
        "--header", f"References: <other@example.com> {reminder['Message-ID']}",
    )  # fmt: skip
    assert answered.returncode == 0, answered.transcript
    await inbound.route()
    assert smtp.messages[-1].recipients == ["elodie@atelier-elodie.fr"]

    stray = await swaks(inbound.port, "--from", CLIENT, "--to", f"scheduling@{DOMAIN}")
    assert stray.returncode == 0
    await inbound.route()
    [skipped] = [e for e in await inbound.gateway.events() if e["status"] == "skipped"]
    assert skipped["reason"] == f"scheduling@{DOMAIN}: answers no message we keep"


async def test_looped_mail_is_dropped_and_auto_replies_are_forwarded(
    inbound: Inbound, smtp: SmtpServer
) -> None:
    reminder = await inbound.notification("r7", "101")
    reply_to = reminder["Reply-To"].addresses[0].addr_spec
    looped = await swaks(
        inbound.port, "--from", CLIENT, "--to", reply_to,
        "--header", f"X-Mailgw-Loop: {DOMAIN}",
    )  # fmt: skip
    assert looped.returncode == 0
    await inbound.route()
    assert len(smtp.messages) == 1  # the reminder only
    [dropped] = [e for e in await inbound.gateway.events() if e["status"] == "skipped"]
    assert dropped["reason"].startswith("not forwarded: already forwarded by this gateway")

    away = await swaks(
        inbound.port, "--from", CLIENT, "--to", reply_to,
        "--header", "Auto-Submitted: auto-replied", "--header", "Subject: Absent",
    )  # fmt: skip
    assert away.returncode == 0
    await inbound.route()
    assert smtp.messages[-1].recipients == ["elodie.rdv@atelier-elodie.fr"]
    assert len(smtp.messages) == 2  # forwarded, and nothing sent back to the client


async def test_one_click_unsubscribe_over_http(inbound: Inbound) -> None:
    reminder = await inbound.notification("r8", "101")
    [link] = [v for v in reminder["List-Unsubscribe"].split(",") if "https:" in v]
    path = link.strip(" <>").split("/", 3)[3]
    url = f"http://127.0.0.1:{inbound.web_port}/{path}"
    loop = asyncio.get_running_loop()
    page = await treq.get(url).asFuture(loop)
    assert page.code == 200 and await inbound.gateway.suppressions.entries("atelier-elodie") == []
    clicked = await treq.post(url, data={"List-Unsubscribe": "One-Click"}).asFuture(loop)
    assert clicked.code == 200
    [entry] = await inbound.gateway.suppressions.entries("atelier-elodie")
    assert (entry.address, entry.reason, entry.detail) == (
        CLIENT,
        "unsubscribe",
        "one-click unsubscribe",
    )
    events = [e["status"] for e in await inbound.gateway.events() if e["job"] == "r8"]
    assert events == ["sent", "opted_out"]
