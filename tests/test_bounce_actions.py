"""What a refusal does, by its class (PRODUCT.md, "Bounces and suppression"): the big
providers' real replies from a loopback SMTP server, end to end through the gateway."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from gateway.bounce_rule_files import shipped_rules
from gateway.clock import epoch_of, rfc3339
from gateway.config import load_config
from gateway.mailbox_providers import provider
from gateway.metrics import REGISTRY
from outbound.bounces import judge, judge_report
from tests.conftest import FixedClock
from tests.gateway_harness import Gateway, write_config
from tests.smtp_server import SmtpServer
from tests.test_outbound import confirmation

RULES = shipped_rules()

GONE = "gone@gmail.com"
SPAM = "spam@gmail.com"
BLOCKED = "blocked@outlook.com"
UNSIGNED = "unsigned@gmail.com"
FULL = "full@gmail.com"
LATER = "later@yahoo.fr"

# As Gmail and Outlook write them (the IP documentation's).
GMAIL_NO_SUCH_USER = (
    "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n"
    "550-5.1.1 double-checking the recipient's email address for typos or\r\n"
    "550-5.1.1 unnecessary spaces. For more information, go to\r\n"
    "550 5.1.1  https://support.google.com/mail/?p=NoSuchUser - gsmtp"
)
GMAIL_UNSOLICITED = (
    "550-5.7.1 [192.0.2.7] Our system has detected that this message is\r\n"
    "550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail,\r\n"
    "550-5.7.1 this message has been blocked. For more information, go to\r\n"
    "550 5.7.1  https://support.google.com/mail/?p=UnsolicitedMessageError - gsmtp"
)
OUTLOOK_BLOCK_LIST = (
    "550 5.7.1 Unfortunately, messages from [192.0.2.7] weren't sent. Please contact your"
    " Internet service provider since part of their network is on our block list (S3150)."
)
GMAIL_UNAUTHENTICATED = (
    "550-5.7.26 This mail is unauthenticated, which poses a security risk to the\r\n"
    "550-5.7.26 sender and Gmail users, and has been blocked. The sender must\r\n"
    "550 5.7.26 authenticate with at least one of SPF or DKIM. - gsmtp"
)
GMAIL_OVER_QUOTA = (
    "552-5.2.2 The recipient's inbox is out of storage space. Please direct the\r\n"
    "552 5.2.2 recipient to https://support.google.com/mail/?p=OverQuotaTemp - gsmtp"
)
TRY_LATER = "421 4.7.0 Try again later, closing connection."


def bounces(bounce_class: str, provider_name: str, action: str) -> float:
    labels = {"class": bounce_class, "provider": provider_name, "action": action}
    return REGISTRY.get_sample_value("mailgw_bounces_total", labels) or 0.0


async def test_only_a_refusal_about_the_address_suppresses_it(
    gateway: Gateway, smtp: SmtpServer, redis: Redis, clock: FixedClock
) -> None:
    smtp.rcpt_replies |= {GONE: GMAIL_NO_SUCH_USER, BLOCKED: OUTLOOK_BLOCK_LIST, LATER: TRY_LATER}
    smtp.data_replies |= {
        SPAM: GMAIL_UNSOLICITED,
        UNSIGNED: GMAIL_UNAUTHENTICATED,
        FULL: GMAIL_OVER_QUOTA,
    }
    suppressed_before = bounces("invalid_recipient", "google", "suppress")
    retried_before = bounces("mailbox_full", "google", "retry")
    await gateway.run(confirmation("b1", GONE, SPAM, BLOCKED, UNSIGNED, FULL, LATER))

    events = {e["recipient"]: e for e in await gateway.events() if e.get("recipient")}
    statuses = {address: e["status"] for address, e in events.items()}
    assert statuses == {
        GONE: "bounced",
        SPAM: "bounced",
        BLOCKED: "bounced",
        UNSIGNED: "bounced",
        FULL: "deferred",
        LATER: "deferred",
    }
    assert events[GONE]["bounce_class"] == "invalid_recipient"
    assert events[UNSIGNED]["bounce_class"] == "authentication"
    assert events[FULL]["bounce_class"] == "mailbox_full"
    assert events[LATER]["bounce_class"] == "rate_limited"
    assert events[SPAM]["bounce_class"] == "content"
    assert events[BLOCKED]["bounce_class"] == "reputation"
    assert "5.7.1" in events[BLOCKED]["reason"] and "S3150" in events[BLOCKED]["reason"]

    [entry] = await gateway.suppressions.entries()
    assert (entry.address, entry.reason, entry.bounce_class, entry.count) == (
        GONE, "hard_bounce", "invalid_recipient", 1
    )  # fmt: skip
    assert entry.account == "atelier-elodie" and "NoSuchUser" in entry.detail
    assert entry.first_seen == rfc3339(clock.now()) and entry.expires_at is not None
    assert epoch_of(entry.expires_at) - clock.now() == 365 * 86400
    for address in (SPAM, BLOCKED, UNSIGNED, FULL, LATER):
        assert await gateway.suppressions.check("confirmation", address, "x") is None
    assert bounces("invalid_recipient", "google", "suppress") == suppressed_before + 1
    assert bounces("mailbox_full", "google", "retry") == retried_before + 1

    # The full mailbox and the 421 are retried, on the relay's schedule; the others not.
    [(_, due)] = await redis.zrange("mailgw:retry", 0, -1, withscores=True)
    del smtp.data_replies[FULL]
    del smtp.rcpt_replies[LATER]
    clock.current = due / 1000
    assert await gateway.queue.promote_due(10) == 1
    await gateway.drain()
    assert sorted(r for m in smtp.messages for r in m.recipients) == [FULL, LATER]
    last = {e["recipient"]: e["status"] for e in (await gateway.events())[-2:]}
    assert last == {FULL: "sent", LATER: "sent"}


async def test_a_suppression_lasts_until_its_class_s_expiry(
    gateway: Gateway, smtp: SmtpServer, clock: FixedClock
) -> None:
    smtp.rcpt_replies[GONE] = GMAIL_NO_SUCH_USER
    await gateway.run(confirmation("b2", GONE))
    clock.current += 364 * 86400
    await gateway.run(confirmation("b3", GONE))
    assert (await gateway.events())[-1]["status"] == "suppressed"
    assert (await gateway.events())[-1]["bounce_class"] == "invalid_recipient"

    clock.current += 2 * 86400  # a year and a day after the bounce: it blocks no more
    assert await gateway.suppressions.entries() == []
    del smtp.rcpt_replies[GONE]
    await gateway.run(confirmation("b4", GONE))
    assert (await gateway.events())[-1]["status"] == "sent"
    assert [m.recipients for m in smtp.messages] == [[GONE]]


async def test_a_refusal_blaming_our_side_is_retried_whatever_its_class() -> None:
    # The relay defers a 530 (authentication required): it would bounce all mail.
    assert judge(530, "5.7.0 Authentication required", False, RULES).action == "retry"
    assert judge(550, "5.7.0 Authentication required", True, RULES).action == "fail"
    # An address no SMTP command can carry, a domain without mail: refused without a reply.
    assert judge(0, "5.1.10 example.com accepts no mail (null MX)", True, RULES).action == (
        "suppress"
    )
    assert judge(0, "5.6.7 'zoé@example.com' is not ASCII", True, RULES).action == "fail"


def test_a_delivery_report_is_judged_by_its_status_and_reply() -> None:
    gone = judge_report(
        "5.1.1", "550 5.1.1 <x@example.org>: Recipient address rejected", True, RULES
    )
    assert (gone.bounce_class, gone.action) == ("invalid_recipient", "suppress")
    # No enhanced code in the reply: the report's status says it.
    bare = judge_report("5.1.1", "550 User unknown", True, RULES)
    assert (bare.bounce_class, bare.action) == ("invalid_recipient", "suppress")
    # The relay that wrote it gave up: a class that would be retried fails.
    full = judge_report("5.2.2", "552 5.2.2 mailbox full", True, RULES)
    assert (full.bounce_class, full.action) == ("mailbox_full", "fail")
    delayed = judge_report("4.4.1", None, False, RULES)
    assert delayed.action == "retry"


def test_providers_are_the_big_ones_or_other() -> None:
    assert [provider(a) for a in ("a@GMail.com", "b@hotmail.fr", "c@live.co.uk", "d@yahoo.fr")] == [
        "google", "microsoft", "microsoft", "yahoo"
    ]  # fmt: skip
    assert [provider(d) for d in ("wanadoo.fr", "neuf.fr", "gmx.de", "web.de", "me.com")] == [
        "orange", "sfr", "gmx", "gmx", "apple"
    ]  # fmt: skip
    assert provider("zoe@atelier-elodie.fr") == provider("x@gmail.com.evil.example") == "other"


async def test_the_administrator_s_rules_decide_at_send_time(
    tmp_path: Path, redis_url: str, redis: Redis, smtp: SmtpServer, clock: FixedClock
) -> None:
    # A relay of theirs says "mailbox unavailable" for a block of its own: not the address.
    config = write_config(tmp_path, redis_url, smtp.port)
    (tmp_path / "bounce-rules.toml").write_text(
        '[[rules]]\nname = "our-relay-block"\nclass = "reputation"\n'
        'pattern = "mailbox unavailable"\nsource = "our relay logs"\n',
        encoding="utf-8",
    )
    config.write_text(
        config.read_text(encoding="utf-8") + '\n[bounces]\nrules_file = "bounce-rules.toml"\n',
        encoding="utf-8",
    )
    gateway = Gateway(load_config(config), redis, clock)
    try:
        smtp.rcpt_replies[GONE] = "550 5.5.0 Requested action not taken: mailbox unavailable"
        await gateway.run(confirmation("b1", GONE))
        [event] = [e for e in await gateway.events() if e.get("recipient")]
        assert (event["status"], event["bounce_class"]) == ("bounced", "reputation")
        assert await gateway.suppressions.entries() == []
    finally:
        await gateway.close()
