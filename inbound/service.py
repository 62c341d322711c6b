"""The inbound side as the daemon runs it: the SMTP server and the unsubscribe page (roles
all and inbound), and the router that forwards what they took in (roles all and outbound)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from twisted.internet.defer import maybeDeferred

from gateway.clock import Clock
from gateway.directory import AccountDirectory
from gateway.errors import ConfigError, ConfigProblem
from gateway.keys import Keys
from gateway.queue import JobQueue
from gateway.settings import Settings
from inbound.authentication import resolver_for
from inbound.forwarding import Forwarder
from inbound.policy import RecipientCheck
from inbound.queue import InboundQueue
from inbound.reply_tokens import reply_secrets
from inbound.router import InboundRouter
from inbound.smtp_server import InboundHandler, InboundServer, start_server
from inbound.unsubscribe import Unsubscriber
from inbound.unsubscribe_web import UnsubscribeResource
from inbound.web import listen
from outbound.dkim import load_keys
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
        self.web: Any = None

    async def serve(self, source: str) -> None:
        """Listen for mail on inbound.listen and for unsubscribes on inbound.web_listen;
        ConfigError (naming `source`, the configuration file) if either cannot be had."""
        from twisted.internet.error import CannotListenError

        settings = self.settings().inbound
        # aiosmtpd logs every command at INFO: addresses are not for the journal.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        handler = InboundHandler(self.check, self.queue.store, settings, self.clock)
        try:
            self.server = await start_server(settings, handler)
        except OSError as exc:
            raise ConfigError([ConfigProblem(source, "inbound.listen", str(exc))]) from exc
        try:
            resource = UnsubscribeResource(self.unsubscriber.one_click)
            self.web = listen(resource, settings.web_listen)
        except CannotListenError as exc:
            problem = ConfigProblem(source, "inbound.web_listen", str(exc.socketError))
            raise ConfigError([problem]) from exc
        log.info("SMTP server on %s, unsubscribe page on %s", settings.listen, settings.web_listen)

    def router(self, transport: RelayTransport) -> InboundRouter:
        """The router of accepted mail, forwarding through the outbound relay."""
        settings = self.settings()
        keys = load_keys(settings.dkim_keys, generate=True)
        forwarder = Forwarder(keys, self.clock)
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
        )

    def reload(self, settings: Settings) -> None:
        self.secrets = reply_secrets(settings)

    async def close(self) -> None:
        if self.web is not None:
            await maybeDeferred(self.web.stopListening).asFuture(asyncio.get_running_loop())
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
