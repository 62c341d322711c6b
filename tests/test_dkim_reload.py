"""DKIM keys rotated and a real `mailgw run` reloaded (SIGHUP): the clients' replies it
forwards afterwards are signed and ARC-sealed with the new keys, checked by Mail::DKIM and
mailauth against the new keys alone (the daemon's one signer, reloaded for the e-mail and
the forwarded replies alike)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from gateway.config import load_config
from gateway.jobs import parse_job
from gateway.queue import JobQueue, QueueOptions
from outbound.dkim import load_keys
from tests.conftest import DnsZone, FixedClock
from tests.dkim_verifiers import (
    mail_dkim_arc,
    mail_dkim_verdicts,
    mailauth_verdicts,
    publish,
    results,
)
from tests.gateway_harness import DOMAIN, write_daemon_config
from tests.smtp_server import SmtpServer
from tests.test_daemon import Daemon, start_daemon
from tests.test_inbound import CLIENT, _reminder
from tests.test_inbound_smtp import swaks

__all__ = ["start_daemon"]  # a fixture, used by name

OLD = ("mailgw-rsa", "mailgw-ed25519")
NEW = ("rsa-2027", "ed25519-2027")


async def received(smtp: SmtpServer, count: int, daemon: Daemon) -> Any:
    """The `count`th message the SMTP server got, as the recipient reads it."""
    deadline = time.monotonic() + 20
    while len(smtp.messages) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"no message {count}; log:\n{daemon.output()}")
        await asyncio.sleep(0.05)
    return smtp.messages[count - 1]


def selectors(data: bytes) -> list[str]:
    message: Any = email.message_from_bytes(data, policy=email.policy.default)
    return [re.search(r"\bs=([^;\s]+)", str(h))[1] for h in message.get_all("DKIM-Signature")]


async def test_a_reload_signs_forwarded_replies_with_the_new_keys(
    tmp_path: Path,
    redis_url: str,
    redis: Redis,
    smtp: SmtpServer,
    dns_zone: DnsZone,
    mail_dkim: str,
    mailauth: str,
    start_daemon: Callable[..., Daemon],
) -> None:
    config = write_daemon_config(tmp_path, redis_url, smtp.port)
    daemon = start_daemon(config)
    queue = JobQueue(redis, QueueOptions(), FixedClock(time.time()))
    await queue.enqueue(parse_job(json.dumps(_reminder("r1", "101"))))
    reminder: Any = email.message_from_bytes(
        (await received(smtp, 1, daemon)).data, policy=email.policy.default
    )
    assert selectors(reminder.as_bytes()) == list(OLD)

    # The keys rotated: new selectors, their key files made by the reload.
    text = config.read_text(encoding="utf-8")
    for old, new in zip(OLD, NEW, strict=True):
        text = text.replace(f'selector = "{old}"', f'selector = "{new}"')
    config.write_text(text, encoding="utf-8")
    daemon.process.send_signal(signal.SIGHUP)
    daemon.expect("READY=1")
    assert "configuration reloaded" in daemon.output()
    publish(dns_zone, *load_keys(load_config(config).settings.dkim_keys, generate=False)[DOMAIN])

    port = int(re.findall(r'listen = "127.0.0.1:(\d+)"', text)[0])
    answered = await swaks(
        port, "--from", CLIENT, "--to", reminder["Reply-To"].addresses[0].addr_spec,
        "--header", f"In-Reply-To: {reminder['Message-ID']}",
        "--header", "Subject: Re: rappel", "--body", "Je serai en retard. Zoé",
    )  # fmt: skip
    assert answered.replies[-2].startswith("250 "), answered.transcript
    forwarded = await received(smtp, 2, daemon)
    assert forwarded.recipients == ["elodie.rdv@atelier-elodie.fr"]
    assert selectors(forwarded.data) == list(NEW)
    # Only the new keys are published: the signatures and the ARC seal verify with them.
    # (Mail::DKIM checks RSA signatures only.)
    assert results(mail_dkim_verdicts(mail_dkim, forwarded.data, dns_zone))["rsa-sha256"] == "pass"
    assert results(mailauth_verdicts(mailauth, forwarded.data, dns_zone)) == {
        "rsa-sha256": "pass",
        "ed25519-sha256": "pass",
    }
    assert mail_dkim_arc(mail_dkim, forwarded.data, dns_zone)["result"] == "pass"
