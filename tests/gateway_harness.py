"""A gateway with the real outbound side and planner, on the test's loop and Redis,
relaying to the loopback test SMTP server (used by the outbound and planner tests)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from twisted.internet.defer import maybeDeferred

from gateway.clock import Clock
from gateway.config import Config
from gateway.directory import AccountDirectory
from gateway.handlers import builtin_handlers
from gateway.http_listener import listen
from gateway.jobs import parse_job
from gateway.keys import Keys
from gateway.planner import Planner
from gateway.queue import JobQueue, QueueOptions
from gateway.settings import Endpoint
from gateway.worker import Worker, WorkerOptions
from inbound.sms_inbox import SmsInbox
from inbound.sms_webhook import SmsWebhook
from outbound.dkim import Signer
from outbound.service import OutboundService
from outbound.sms.service import SmsService
from outbound.suppression import SuppressionList
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "acuityscheduling.com"


def write_config(directory: Path, redis_url: str, smtp_port: int) -> Path:
    (directory / "accounts").mkdir()
    shutil.copy(ROOT / "config/accounts/atelier-elodie.toml", directory / "accounts")
    # The example account's follow-ups name the example's service-wide templates.
    shutil.copytree(ROOT / "config/templates", directory / "templates")
    config = directory / "mailgw.toml"
    config.write_text(
        f"""
state_dir = "state"
[redis]
url = "{redis_url}"
[[sender_domains]]
domain = "{DOMAIN}"
[[sender_domains.dkim]]
selector = "mailgw-rsa"
algorithm = "rsa"
[[sender_domains.dkim]]
selector = "mailgw-ed25519"
algorithm = "ed25519"
[relay]
transport = "smarthost"
retry_initial = "5m"
retry_max = "4000s"
max_lifetime = "5d"
[relay.smarthost]
host = "127.0.0.1"
port = {smtp_port}
starttls = "none"
[inbound]
reply_domain = "reply.{DOMAIN}"
public_url = "https://mail.{DOMAIN}"
""",
        encoding="utf-8",
    )
    return config


def write_daemon_config(directory: Path, redis_url: str, smtp_port: int) -> Path:
    """write_config's file for a real `mailgw run` (role all): its SMTP server, web pages
    and metrics on free loopback ports, its queue and scheduler quick."""
    config = write_config(directory, redis_url, smtp_port)
    text = config.read_text(encoding="utf-8").replace(
        "[inbound]\n",
        f'[inbound]\nlisten = "127.0.0.1:{free_port()}"\n'
        f'web_listen = "127.0.0.1:{free_port()}"\nprocesses = 1\n',
    )
    text += f"""[queue]
block_timeout = "0.1s"
scheduler_interval = "0.05s"
shutdown_grace = "5s"
[sms]
webhook_listen = "127.0.0.1:{free_port()}"
[metrics]
listen = "127.0.0.1:{free_port()}"
"""
    config.write_text(text, encoding="utf-8")
    return config


class Gateway:
    """A worker with the real outbound side, on the test's loop and a settable clock."""

    def __init__(self, config: Config, redis: Redis, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        keys = Keys()
        self.directory = AccountDirectory(
            redis, keys, config.accounts, cache_size=10, cache_ttl=60, timer=clock.now
        )
        self.signer = Signer.from_settings(config.settings)
        self.outbound = OutboundService(
            lambda: config.settings,
            lambda: self.signer,
            redis,
            keys,
            self.directory,
            clock,
            lambda: config.bounce_rules,
        )
        self.outbound.email.jitter = lambda: 0.0
        self.sms = SmsService(
            config,
            redis,
            keys,
            self.directory,
            lambda: config.settings,
            clock,
            lambda: self.outbound.templates,
        )
        self.queue = JobQueue(redis, QueueOptions(), clock)
        self.planner = Planner(
            redis, keys, self.queue, self.directory, clock, lambda: 86400,
            lambda: config.settings.deadlines,
        )  # fmt: skip
        self.worker = Worker(
            self.queue,
            self.directory,
            builtin_handlers(
                self.directory,
                lambda: config.settings,
                clock,
                self.outbound.email,
                self.sms.handler,
                self.planner,
            ),
            "test",
            WorkerOptions(block_ms=10),
        )
        self.suppressions = SuppressionList(redis, keys, clock)
        self.webhook: Any = None

    async def run(self, job: dict[str, Any]) -> None:
        await self.queue.ensure_group()
        await self.queue.enqueue(parse_job(json.dumps(job)))
        await self.drain()

    async def drain(self) -> None:
        while deliveries := await self.queue.read("test", 100, 10):
            for delivery in deliveries:
                await self.worker.process(delivery)

    def texts(self) -> list[dict[str, Any]]:
        """What the `file` SMS provider wrote."""
        outbox = self.config.settings.sms.file.path
        if not outbox.exists():
            return []
        return [json.loads(line) for line in outbox.read_text(encoding="utf-8").splitlines()]

    def serve_webhook(self, port: int) -> None:
        """The SMS webhook on 127.0.0.1:`port`, as the daemon serves it (until close())."""
        inbox = SmsInbox(
            self.queue.redis, self.queue.keys, self.queue, self.directory,
            lambda: self.config.settings, lambda: self.sms.provider, self.clock,
        )  # fmt: skip
        webhook = SmsWebhook(
            self.config.settings.sms.provider,
            lambda: self.sms.provider,
            lambda: self.config.settings.sms.webhook_url,
            inbox,
        )
        self.webhook = listen(webhook, Endpoint("127.0.0.1", port))

    async def close(self) -> None:
        if self.webhook is not None:
            stopped = maybeDeferred(self.webhook.stopListening)
            await stopped.asFuture(asyncio.get_running_loop())
        await self.outbound.close()
        await self.sms.close()

    async def events(self) -> list[dict[str, Any]]:
        return [json.loads(e) for _, e in await self.queue.events("0", 1000)]
