"""The inbound side as the daemon runs it: the SMTP server, in inbound.processes processes,
and the unsubscribe page (roles all and inbound), and the router that forwards what they took
in (roles all and outbound)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from twisted.internet.defer import maybeDeferred

from gateway.bounce_matching import Rule
from gateway.clock import Clock
from gateway.directory import AccountDirectory
from gateway.errors import ConfigError, ConfigProblem
from gateway.http_listener import listen
from gateway.keys import Keys
from gateway.outage import Outage
from gateway.queue import JobQueue
from gateway.reply_tokens import reply_secrets
from gateway.settings import Settings
from inbound.authentication import resolver_for
from inbound.client_connections import ConnectionSlots
from inbound.forwarding import Forwarder
from inbound.policy import RecipientCheck
from inbound.queue import InboundQueue
from inbound.router import InboundRouter
from inbound.smtp_children import SmtpChildren
from inbound.smtp_server import InboundHandler, InboundServer, settle_for_sessions, start_server
from inbound.unsubscribe import Unsubscriber
from inbound.unsubscribe_web import UnsubscribeResource
from outbound.dkim import Signer
from outbound.relay import RelayTransport

log = logging.getLogger(__name__)


class InboundService:
    """What the inbound side holds; reply keys are read again on reload."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        redis: Redis,
        keys: Keys,
        directory: AccountDirectory,
        events: JobQueue,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.directory = directory
        self.events = events
        self.queue = InboundQueue(redis, keys)
        self.secrets = reply_secrets(settings())
        self.check = RecipientCheck(redis, keys, directory, settings, lambda: self.secrets, clock)
        self.unsubscriber = Unsubscriber(redis, keys, events, clock)
        self.server: InboundServer | None = None
        self.children: SmtpChildren | None = None
        # the file of connection slots the SMTP processes share, when there are several
        self.slots_file: int | None = None
        self.web: Any = None
        self.stopping = asyncio.Event()

    async def serve(self, source: str, config_path: Path | None, redis_url: str) -> None:
        """Listen for mail on inbound.listen, in this process and inbound.processes - 1
        others (which read `config_path` and store into `redis_url`), and for unsubscribes
        on inbound.web_listen; ConfigError (naming `source`, the configuration file) if
        either address cannot be had."""
        from twisted.internet.error import CannotListenError

        settings = self.settings().inbound
        # aiosmtpd logs every command at INFO: addresses are not for the journal.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        handler = InboundHandler(self.check, self.queue.store, settings, self.clock)
        processes = settings.process_count()
        if processes > 1:
            self.slots_file = ConnectionSlots.new_file()
        slots = ConnectionSlots(settings.max_connections_per_client, self.slots_file)
        try:
            self.server = await start_server(settings, handler, slots=slots)
        except OSError as exc:
            raise ConfigError([ConfigProblem(source, "inbound.listen", str(exc))]) from exc
        if self.slots_file is not None:
            self.children = SmtpChildren(
                processes - 1, self.server.listening(), self.slots_file, config_path, redis_url
            )
            await self.children.start()
        settle_for_sessions()
        try:
            resource = UnsubscribeResource(self.unsubscriber.one_click)
            self.web = listen(resource, settings.web_listen)
        except CannotListenError as exc:
            problem = ConfigProblem(source, "inbound.web_listen", str(exc.socketError))
            raise ConfigError([problem]) from exc
        log.info(
            "SMTP server on %s (%d process(es)), unsubscribe page on %s",
            settings.listen,
            processes,
            settings.web_listen,
        )

    async def run(self) -> None:
        """Until stop(), then until the SMTP sessions under way have ended."""
        await self.stopping.wait()
        if self.server is not None:
            await self.server.finished()
        if self.children is not None:
            await self.children.finished()

    def stop(self) -> None:
        """Warm stop: no new SMTP connections; those open may finish (see run())."""
        self.stopping.set()
        if self.server is not None:
            self.server.stop()
        if self.children is not None:
            self.children.stop()

    def router(
        self,
        transport: RelayTransport,
        signer: Callable[[], Signer],
        bounce_rules: Callable[[], Sequence[Rule]],
        outage: Outage | None = None,
    ) -> InboundRouter:
        """The router of accepted mail, forwarding through the outbound relay, signed by the
        daemon's signer (the outbound side's, a new one after a reload), its bounces
        classified by the configured rules (new ones after a reload)."""
        settings = self.settings()
        forwarder = Forwarder(signer, self.clock)
        return InboundRouter(
            self.queue,
            self.events,
            self.directory,
            self.check,
            self.settings,
            lambda: forwarder,
            transport,
            resolver_for(settings.relay.mx.resolvers),
            self.clock,
            bounce_rules,
            outage,
        )

    def reload(self, settings: Settings) -> None:
        self.secrets = reply_secrets(settings)
        if self.children is not None:
            self.children.reload()

    async def close(self) -> None:
        """Stop serving now, ending the SMTP sessions still open."""
        if self.web is not None:
            await maybeDeferred(self.web.stopListening).asFuture(asyncio.get_running_loop())
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        if self.children is not None:
            await self.children.close()
        if self.slots_file is not None:
            os.close(self.slots_file)
