"""E-mail jobs end to end: the example French business's confirmation through a loopback
smarthost, checked by independent DKIM verifiers; deferrals, bounces and suppression."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path
from typing import Any

import icalendar
from redis.asyncio import Redis

from gateway.config import load_config
from gateway.jobs import parse_job
from gateway.reply_tokens import ReplyTarget, read_local_part, reply_secrets
from outbound.dkim import load_keys
from outbound.email_handler import SENT_AGAIN
from tests.conftest import DnsZone, FixedClock
from tests.dkim_verifiers import (
    dkimpy_verdicts,
    mail_dkim_verdicts,
    mailauth_verdicts,
    publish,
    results,
)
from tests.gateway_harness import DOMAIN, Gateway, write_config
from tests.header_parsers import (
    check_lines,
    expected,
    mailauth_headers,
    mailtools_headers,
    rfc2047_name,
)
from tests.smtp_server import SmtpServer


def confirmation(job_id: str, *addresses: str) -> dict[str, Any]:
    return {
        "v": 1,
        "id": job_id,
        "kind": "email.send",
        "account": "atelier-elodie",
        "to": list(addresses),
        "template": "confirmation",
        "context": {
            "appointment": {
                "id": "appt-42",
                "calendar": "101",
                "type": "2001",
                "start": "2026-11-24T13:30:00Z",
                "end": "2026-11-24T14:15:00Z",
                "timezone": "Europe/Paris",
                "location": "12 rue des Lilas, Lyon",
                "clients": [{"name": "Zoé Martin", "emails": list(addresses)}],
                "cancel_url": "https://example.com/cancel/abc",
                "reschedule_url": "https://example.com/reschedule/abc",
                "sequence": 2,
            }
        },
    }


async def test_confirmation_of_the_french_business_arrives_signed_and_whole(
    gateway: Gateway,
    smtp: SmtpServer,
    dns_zone: DnsZone,
    mail_dkim: str,
    mailauth: str,
) -> None:
    await gateway.run(confirmation("c1", "zoe@example.com"))
    [event] = await gateway.events()
    assert (event["status"], event["recipient"], event["channel"]) == (
        "sent",
        "zoe@example.com",
        "email",
    )
    [received] = smtp.messages
    message = email.message_from_bytes(received.data, policy=email.policy.default)
    [sender] = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (
        "L'Atelier d'Élodie & Fils",
        f"scheduling@{DOMAIN}",
    )
    # Replies come back through the gateway, which routes them to the calendar's address.
    [reply_to] = message["Reply-To"].addresses
    assert reply_to.display_name == "L'Atelier d'Élodie & Fils"
    assert reply_to.domain == f"reply.{DOMAIN}"
    target = read_local_part(reply_to.username, reply_secrets(gateway.config.settings), 0)
    assert target == ReplyTarget("atelier-elodie", "101", "appt-42")
    assert message["To"].addresses[0].display_name == "Zoé Martin"
    assert message["Message-ID"] == event["message_id"]
    assert message["Message-ID"].endswith(f"@{DOMAIN}>")
    assert received.sender.startswith("b-") and received.sender.endswith(f"@{DOMAIN}")
    assert message["Auto-Submitted"] == "auto-generated"
    assert "List-Unsubscribe" not in message  # confirmations cannot be unsubscribed from
    # Gmail's feedback loop ties a complaint to the kind, the account and the domain; the
    # signatures cover it (checked by the verifiers below).
    assert message["Feedback-ID"] == f"confirmation:atelier-elodie:{DOMAIN}:mailgw"
    for signature in message.get_all("DKIM-Signature") or []:
        tags = dict(tag.split("=", 1) for tag in "".join(str(signature).split()).split(";") if tag)
        assert "feedback-id" in tags["h"].lower().split(":")
    text = message.get_body(("plain",))
    assert text is not None and "mardi 24 novembre 2026 à 14:30" in text.get_content()

    [calendar_part] = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    calendar = icalendar.Calendar.from_ical(calendar_part.get_content())
    [appointment] = calendar.walk("VEVENT")
    assert calendar["METHOD"] == "REQUEST"
    assert str(appointment["UID"]) == f"appt-42@{DOMAIN}"
    assert appointment["SEQUENCE"] == 2

    keys = load_keys(gateway.config.settings.dkim_keys, generate=False)[DOMAIN]
    publish(dns_zone, *keys)
    assert results(mail_dkim_verdicts(mail_dkim, received.data, dns_zone))["rsa-sha256"] == "pass"
    assert results(mailauth_verdicts(mailauth, received.data, dns_zone)) == {
        "rsa-sha256": "pass",
        "ed25519-sha256": "pass",
    }
    assert results(dkimpy_verdicts(received.data, dns_zone)) == {
        "rsa-sha256": "pass",
        "ed25519-sha256": "pass",
    }


# 1,100 characters of French: accents, apostrophes straight and typographic, quotes,
# guillemets with non-breaking spaces, commas, an ampersand.
LONG_BUSINESS = (
    "L'Atelier d'Élodie & Fils \u2014 « Coiffure, beauté & bien-être » "
    'chez "Zoé" d\u2019Artagnan, Saint-Étienne-du-Rouvray '
) * 10
LONG_TYPE = ("Coupe, shampooing & brushing « spécial mariée » avec l\u2019équipe d'Élodie " * 3)[
    :-1
]
CLIENTS = {
    "yamada@example.com": "山田花子「やまだ はなこ」様、東京都渋谷区神南一丁目のお客様 " * 8,
    "amal@example.org": "أمل بنت عبد الله الهاشمي، صالون الجمال في دبي " * 8,
    "olga@example.net": "Ольга Сергеевна «Золотая рыбка» Петрова-Водкина " * 8,
}
LONG_SUBJECT = "Votre rendez-vous « très spécial » chez l\u2019Atelier d'Élodie : " * 12


async def test_long_names_in_any_script_reach_every_reader_whole(
    gateway: Gateway,
    smtp: SmtpServer,
    dns_zone: DnsZone,
    mail_dkim: str,
    mailauth: str,
    mailtools: str,
) -> None:
    """From, To, Reply-To and Subject made from long names (an account.upsert, a job's
    clients, an email.send subject): within RFC 2047 and 5322's limits, read back exactly by
    Python's email package, mailauth and Perl's MailTools, and signed so that the three DKIM
    verifiers pass."""
    data = {
        "business_name": LONG_BUSINESS,
        "owner_email": "owner@example.com",
        "plan": "growing",
        "timezone": "Europe/Paris",
        "locale": "fr",
        "country": "FR",
        "calendars": [{"id": "101", "name": "Élodie « la patronne »"}],
        "appointment_types": [{"id": "2001", "name": LONG_TYPE}],
    }
    upsert = {"v": 1, "id": "u1", "kind": "account.upsert", "account": "long", "data": data}
    await gateway.run(upsert)
    job = confirmation("c1", *CLIENTS)
    job["account"] = "long"
    job["context"]["appointment"]["clients"] = [
        {"name": name, "emails": [address]} for address, name in CLIENTS.items()
    ]
    await gateway.run(job)
    await gateway.run(
        {
            "v": 1,
            "id": "s1",
            "kind": "email.send",
            "account": "long",
            "to": ["zoe@example.com"],
            "subject": LONG_SUBJECT,
            "text": "À bientôt.",
        }
    )
    events = await gateway.events()
    assert [e["status"] for e in events] == ["applied", "sent", "sent", "sent", "sent"], events
    keys = load_keys(gateway.config.settings.dkim_keys, generate=False)[DOMAIN]
    publish(dns_zone, *keys)
    confirmed = f"Rendez-vous confirmé : {LONG_TYPE}, mardi 24 novembre 2026 à 14:30"
    subjects = {address: confirmed for address in CLIENTS} | {"zoe@example.com": LONG_SUBJECT}
    names = {**CLIENTS, "zoe@example.com": ""}
    assert {m.recipients[0] for m in smtp.messages} == set(subjects)
    for received in smtp.messages:
        to = received.recipients[0]
        check_lines(received.data)
        message = email.message_from_bytes(received.data, policy=email.policy.default)
        raw = email.message_from_bytes(received.data, policy=email.policy.compat32)
        assert not message.defects
        # the headers of a message, each once: a name could not add one
        fields = [key.lower() for key in message if key != "DKIM-Signature"]
        assert sorted(fields) == sorted(
            {"from", "to", "reply-to", "subject", "date", "message-id", "mime-version",
             "auto-submitted", "feedback-id", "content-type", "content-transfer-encoding"}
            & set(fields)
        )  # fmt: skip
        assert fields[:4] == ["from", "to", "reply-to", "subject"]
        for header, name in (
            ("From", LONG_BUSINESS),
            ("To", names[to]),
            ("Reply-To", LONG_BUSINESS),
        ):
            assert len(message[header].addresses) == 1
            assert rfc2047_name(raw[header]) == expected(name)
        assert message["From"].addresses[0].addr_spec == f"scheduling@{DOMAIN}"
        assert message["To"].addresses[0].addr_spec == to
        assert message["Reply-To"].addresses[0].domain == f"reply.{DOMAIN}"
        assert message["Subject"] == expected(subjects[to])
        reply_to = message["Reply-To"].addresses[0].addr_spec
        for read in (
            mailauth_headers(mailauth, received.data),
            mailtools_headers(mailtools, received.data),
        ):
            assert read["fields"] == [key.lower() for key in message]
            assert read["from"] == [
                {"name": expected(LONG_BUSINESS), "address": f"scheduling@{DOMAIN}"}
            ]
            assert read["to"] == [{"name": expected(names[to]), "address": to}]
            assert read["reply-to"] == [{"name": expected(LONG_BUSINESS), "address": reply_to}]
            assert read["subject"] == expected(subjects[to])
        both = {"rsa-sha256": "pass", "ed25519-sha256": "pass"}
        assert results(dkimpy_verdicts(received.data, dns_zone)) == both
        assert results(mailauth_verdicts(mailauth, received.data, dns_zone)) == both
        perl = results(mail_dkim_verdicts(mail_dkim, received.data, dns_zone))
        assert perl["rsa-sha256"] == "pass"


async def test_each_client_address_gets_its_own_message(gateway: Gateway, smtp: SmtpServer) -> None:
    await gateway.run(confirmation("c2", "zoe@example.com", "paul@example.com"))
    assert sorted(r.recipients[0] for r in smtp.messages) == [
        "paul@example.com",
        "zoe@example.com",
    ]
    assert len({r.sender for r in smtp.messages}) == 2  # a bounce names its message
    assert {e["status"] for e in await gateway.events()} == {"sent"}


async def test_a_run_of_an_attempt_interrupted_while_sending_sends_the_same_message(
    gateway: Gateway, smtp: SmtpServer, redis: Redis
) -> None:
    # What a worker killed after the relay took the message, before recording it, leaves:
    # the mark of the send it began, and nothing delivered.
    await redis.hset("mailgw:inflight:c3", "zoe@example.com", "abcdefghijklmnopqrstuvwxyz")
    await gateway.run(confirmation("c3", "zoe@example.com"))
    [received] = smtp.messages
    message_id = f"<abcdefghijklmnopqrstuvwxyz@{DOMAIN}>"
    assert email.message_from_bytes(received.data)["Message-ID"] == message_id
    assert received.sender == f"b-abcdefghijklmnopqrstuvwxyz@{DOMAIN}"
    [event] = await gateway.events()
    assert (event["status"], event["message_id"]) == ("sent", message_id)
    assert event["reason"].endswith(SENT_AGAIN)
    # Kept, should the run after this one find the message delivered but not recorded.
    assert await redis.hget("mailgw:inflight:c3", "zoe@example.com") == (
        "abcdefghijklmnopqrstuvwxyz again"
    )


async def test_a_second_send_whose_run_stopped_before_recording_it_is_said(
    gateway: Gateway, smtp: SmtpServer, redis: Redis
) -> None:
    # What a worker killed after sending again, and recording delivered, leaves.
    await redis.hset("mailgw:inflight:c5", "zoe@example.com", "abcdefghijklmnopqrstuvwxyz again")
    await redis.hset(
        "mailgw:delivered:c5", "zoe@example.com", f"<abcdefghijklmnopqrstuvwxyz@{DOMAIN}>"
    )
    await gateway.run(confirmation("c5", "zoe@example.com"))
    assert smtp.messages == []
    [event] = await gateway.events()
    assert event["status"] == "sent"
    assert event["reason"] == f"sent by an interrupted earlier attempt; {SENT_AGAIN}"


async def test_a_send_that_ends_otherwise_than_sent_leaves_no_mark(
    gateway: Gateway, smtp: SmtpServer, redis: Redis
) -> None:
    await gateway.run(confirmation("c4", "defer@example.com", "zoe@example.com"))
    assert await redis.hkeys("mailgw:inflight:c4") == ["zoe@example.com"]


async def test_temporary_failure_is_retried_on_the_relay_schedule(
    gateway: Gateway, smtp: SmtpServer, redis: Redis, clock: FixedClock
) -> None:
    await gateway.run(confirmation("c3", "defer-me@example.com", "zoe@example.com"))
    events = await gateway.events()
    assert [(e["recipient"], e["status"]) for e in events if e.get("recipient")] == [
        ("zoe@example.com", "sent"),
        ("defer-me@example.com", "deferred"),
    ]
    # The waiting recipient's own event says why, with the reply's class.
    assert events[-2]["bounce_class"] == "inactive_mailbox"
    assert events[-1]["status"] == "deferred"
    assert "450 4.2.1" in events[-1]["reason"]
    for expected_delay in (300, 600, 1200):
        [(_, due)] = await redis.zrange("mailgw:retry", 0, -1, withscores=True)
        assert due / 1000 - clock.now() == expected_delay
        clock.current = due / 1000
        assert await gateway.queue.promote_due(10) == 1
        await gateway.drain()
    # The recipient reached on the first attempt was not sent to again.
    assert [r.recipients for r in smtp.messages] == [["zoe@example.com"]]
    assert [e["status"] for e in await gateway.events()][-4:] == ["deferred"] * 4


async def test_undelivered_mail_bounces_when_its_lifetime_is_over(
    gateway: Gateway, redis: Redis, clock: FixedClock
) -> None:
    await gateway.run(confirmation("c4", "defer-me@example.com"))
    while await redis.zcard("mailgw:retry"):
        [(_, due)] = await redis.zrange("mailgw:retry", 0, -1, withscores=True)
        clock.current = due / 1000
        await gateway.queue.promote_due(10)
        await gateway.drain()
    last = (await gateway.events())[-1]
    assert last["status"] == "bounced"
    assert last["reason"].startswith("undelivered after ")
    assert clock.now() - 1_800_000_000 >= 5 * 86400 - 4000


async def test_permanent_failure_bounces_and_suppresses_the_address(
    gateway: Gateway, smtp: SmtpServer
) -> None:
    await gateway.run(confirmation("c5", "reject-me@example.com"))
    [bounced] = await gateway.events()
    assert bounced["status"] == "bounced"
    assert "550 5.1.1" in bounced["reason"]
    entry = await gateway.suppressions.check("confirmation", "reject-me@example.com", "x")
    assert entry is not None and entry.reason == "hard_bounce"

    await gateway.run(confirmation("c6", "Reject-Me@example.com"))
    suppressed = (await gateway.events())[-1]
    assert (suppressed["job"], suppressed["status"], suppressed["reason"]) == (
        "c6",
        "suppressed",
        "hard_bounce",
    )
    assert smtp.messages == []


async def test_an_opt_out_stops_reminders_but_not_confirmations(
    gateway: Gateway, smtp: SmtpServer
) -> None:
    from outbound.suppression import Suppression

    await gateway.suppressions.add(
        Suppression("zoe@example.com", "unsubscribe", "link", "t", "atelier-elodie")
    )
    reminder = confirmation("r1", "zoe@example.com")
    reminder["template"] = "reminder"
    await gateway.run(reminder)
    await gateway.run(confirmation("c7", "zoe@example.com"))
    statuses = [(e["job"], e["status"]) for e in await gateway.events()]
    assert statuses == [("r1", "suppressed"), ("c7", "sent")]
    [received] = smtp.messages
    assert b"List-Unsubscribe" not in received.data


async def test_reminders_carry_one_click_unsubscribe(gateway: Gateway, smtp: SmtpServer) -> None:
    reminder = confirmation("r2", "zoe@example.com")
    reminder["template"] = "reminder"
    await gateway.run(reminder)
    [received] = smtp.messages
    message = email.message_from_bytes(received.data, policy=email.policy.default)
    token = message["Message-ID"][1:].split("@")[0]
    assert message["List-Unsubscribe"] == (
        f"<https://mail.{DOMAIN}/unsubscribe/{token}>, <mailto:unsubscribe-{token}@reply.{DOMAIN}>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_hipaa_mail_waits_for_verified_tls(
    tmp_path: Path, redis_url: str, redis: Redis, smtp: SmtpServer, clock: FixedClock
) -> None:
    config_path = write_config(tmp_path, redis_url, smtp.port)
    account = tmp_path / "accounts" / "atelier-elodie.toml"
    text = account.read_text(encoding="utf-8").replace("# hipaa = false", "hipaa = true")
    account.write_text(text, encoding="utf-8")
    gateway = Gateway(load_config(config_path), redis, clock)
    try:
        await gateway.run(confirmation("h1", "zoe@example.com"))
    finally:
        await gateway.close()
    recipient, event = await gateway.events()
    assert (recipient["status"], event["status"]) == ("deferred", "deferred")
    assert "TLS" in event["reason"]
    assert recipient["recipient"] == "zoe@example.com" and "bounce_class" in recipient
    assert smtp.messages == []  # the server offers no STARTTLS: nothing was sent in clear


async def test_a_refused_address_fails_alone(gateway: Gateway, smtp: SmtpServer) -> None:
    job = confirmation("c8", "zoe@example.com")
    job["to"] = ["zoé@example.com", "zoe@example.com"]
    await gateway.run(job)
    statuses = {e["recipient"]: (e["status"], e.get("reason", "")) for e in await gateway.events()}
    assert statuses["zoe@example.com"][0] == "sent"
    assert statuses["zoé@example.com"][0] == "failed"
    assert "non-ASCII local part" in statuses["zoé@example.com"][1]
    assert len(smtp.messages) == 1


async def test_a_message_sent_before_the_worker_died_is_not_sent_again(
    gateway: Gateway, smtp: SmtpServer
) -> None:
    await gateway.queue.ensure_group()
    await gateway.queue.enqueue(parse_job(json.dumps(confirmation("c9", "zoe@example.com"))))
    [delivery] = await gateway.queue.read("test", 10, 10)
    job = parse_job(delivery.raw)
    assert (await gateway.queue.claim(job, delivery)).action == "run"
    # The message goes out, then the worker dies before acknowledging the job.
    [sent] = await gateway.outbound.email.handle(job, 1)
    # Another worker takes the job over and runs it again.
    [again] = await gateway.outbound.email.handle(job, 1)
    assert len(smtp.messages) == 1
    assert again.status == "sent"
    assert again.message_id == sent.message_id
    assert again.reason == "sent by an interrupted earlier attempt"
