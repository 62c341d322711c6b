"""A follow-up's own template (`template` of an account's follow-up): rendered by a real
`mailgw run` and relayed to the loopback SMTP server; a template found nowhere is refused by
`mailgw check-config` and by the daemon, naming the file and key."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from gateway.jobs import parse_job
from gateway.queue import JobQueue, QueueOptions
from tests.conftest import FixedClock
from tests.gateway_harness import write_daemon_config
from tests.smtp_server import SmtpServer
from tests.test_daemon import ROOT, Daemon, mailgw, start_daemon

__all__ = ["start_daemon"]  # a fixture, used by name

CLIENT = "zoe@example.com"
# The example account's first follow-up: template "merci", 1 day after the start.
FIRST = "notifications.follow_ups[0].template"


def booking(start: datetime) -> dict[str, Any]:
    return {
        "v": 1,
        "id": "b1",
        "kind": "appointment.booked",
        "account": "atelier-elodie",
        "appointment": {
            "id": "appt-1",
            "calendar": "101",
            "type": "2001",
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=45)).isoformat(),
            "timezone": "Europe/Paris",
            "clients": [{"name": "Zoé Martin", "emails": [CLIENT]}],
        },
    }


async def messages(smtp: SmtpServer, count: int, daemon: Daemon) -> list[Any]:
    deadline = time.monotonic() + 20
    while len(smtp.messages) < count:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{len(smtp.messages)} message(s), not {count}; log:\n{daemon.output()}"
            )
        await asyncio.sleep(0.05)
    return [email.message_from_bytes(m.data, policy=email.policy.default) for m in smtp.messages]


async def test_a_follow_up_is_rendered_from_the_template_it_names(
    tmp_path: Path,
    redis_url: str,
    redis: Redis,
    smtp: SmtpServer,
    start_daemon: Callable[..., Daemon],
) -> None:
    config = write_daemon_config(tmp_path, redis_url, smtp.port)
    # The blocking readiness wait holds the SMTP server's loop: nothing is sent yet.
    daemon = start_daemon(config)
    # Started a day ago but 3 s: the confirmation, past the start, is expired, not sent
    # (docs/planner.md, "Delivery deadlines"); the 1-day follow-up goes in 3 s.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1) + timedelta(seconds=3)
    queue = JobQueue(redis, QueueOptions(), FixedClock(time.time()))
    await queue.enqueue(parse_job(json.dumps(booking(start))))
    [follow_up] = await messages(smtp, 1, daemon)
    expired = [json.loads(e) for _, e in await queue.events("0", 100)]
    assert [(e["kind"], e["status"]) for e in expired if e["status"] == "expired"] == [
        ("confirmation", "expired")
    ]
    # config/templates/fr/merci.*: the service-wide templates the example ships.
    assert follow_up["Subject"] == "Merci de votre visite chez L'Atelier d'Élodie & Fils"
    text = follow_up.get_body(("plain",)).get_content()
    assert "Merci d'être venu(e) chez L'Atelier d'Élodie & Fils" in text
    html = follow_up.get_body(("html",)).get_content()
    assert "Nous espérons vous revoir bientôt." in html
    # A follow-up still: it carries the unsubscribe link.
    assert follow_up["List-Unsubscribe"]


async def test_the_accounts_own_template_comes_before_the_service_wide_one(
    tmp_path: Path,
    redis_url: str,
    redis: Redis,
    smtp: SmtpServer,
    start_daemon: Callable[..., Daemon],
) -> None:
    config = write_daemon_config(tmp_path, redis_url, smtp.port)
    own = tmp_path / "templates" / "atelier-elodie" / "fr"
    own.mkdir(parents=True)
    (own / "merci.txt").write_text("Merci {{ client.name }}, de la part d'Élodie.\n")
    daemon = start_daemon(config)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1) + timedelta(seconds=3)
    queue = JobQueue(redis, QueueOptions(), FixedClock(time.time()))
    await queue.enqueue(parse_job(json.dumps(booking(start))))
    [follow_up] = await messages(smtp, 1, daemon)
    # The text is the account's; the subject and HTML, which it has not, the service-wide ones.
    text = follow_up.get_body(("plain",)).get_content()
    assert text.splitlines() == ["Merci Zoé Martin, de la part d'Élodie."]
    assert follow_up["Subject"] == "Merci de votre visite chez L'Atelier d'Élodie & Fils"


def example_config(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the shipped example: its main file and the example account's file."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    return tmp_path / "config" / "mailgw.toml", tmp_path / "config/accounts/atelier-elodie.toml"


def test_the_shipped_example_has_the_templates_its_follow_ups_name(tmp_path: Path) -> None:
    config, _ = example_config(tmp_path)
    for locale in ("fr", "en"):
        for name in ("merci", "revenez-nous-voir"):
            assert (config.parent / "templates" / locale / f"{name}.txt").is_file()
    result = mailgw(config, "check-config")
    assert result.returncode == 0, result.stderr


def test_a_follow_up_template_found_nowhere_is_a_config_error(tmp_path: Path) -> None:
    config, account = example_config(tmp_path)
    for path in (config.parent / "templates").glob("*/merci.*"):
        path.unlink()
    checked = mailgw(config, "check-config")
    assert checked.returncode == 1
    [problem] = checked.stderr.splitlines()
    assert problem.startswith(f"{account}:{FIRST}: no template 'merci'"), problem
    # The daemon refuses it as it refuses any other configuration error.
    run = mailgw(config, "run")
    assert run.returncode == 2
    assert f"{account}:{FIRST}: no template 'merci'" in run.stderr


def test_the_accounts_own_folder_is_enough(tmp_path: Path) -> None:
    config, _ = example_config(tmp_path)
    own = config.parent / "templates" / "atelier-elodie" / "fr"
    own.mkdir(parents=True)
    for path in (config.parent / "templates" / "fr").glob("merci.*"):
        path.rename(own / path.name)
    for path in (config.parent / "templates" / "en").glob("merci.*"):
        path.unlink()
    result = mailgw(config, "check-config")
    assert result.returncode == 0, result.stderr


def test_a_template_without_its_subject_is_found_nowhere(tmp_path: Path) -> None:
    config, account = example_config(tmp_path)
    for path in (config.parent / "templates").glob("*/merci.subject.txt"):
        path.unlink()
    checked = mailgw(config, "check-config")
    assert checked.returncode == 1
    assert checked.stderr.startswith(f"{account}:{FIRST}: no template 'merci'")
    assert "merci.subject.txt" in checked.stderr
