"""The outbound side as the daemon runs it: renderer, DKIM signer and relay, reloadable."""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis

from gateway.clock import Clock
from gateway.directory import AccountDirectory
from gateway.keys import Keys
from gateway.settings import Settings
from outbound.builder import MessageBuilder
from outbound.dkim import Signer, load_keys
from outbound.email_handler import EmailHandler
from outbound.relay import RelayTransport, build_transport
from outbound.rendering import Renderer


def signer_for(settings: Settings) -> Signer:
    """A signer with every sender domain's keys, creating the missing default ones."""
    return Signer(load_keys(settings.dkim_keys, generate=True))


class OutboundService:
    """Owns what e-mail jobs need. A reload takes new templates and DKIM keys at
    once; the relay transport (its connections) lasts until the process stops."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        redis: Redis,
        keys: Keys,
        directory: AccountDirectory,
        clock: Clock,
    ) -> None:
        current = settings()
        self.renderer = Renderer(current.templates.directory)
        self.signer = signer_for(current)
        self.transport: RelayTransport = build_transport(current.relay)
        self.builder = MessageBuilder(settings, lambda: self.renderer, lambda: self.signer, clock)
        self.email = EmailHandler(
            redis, keys, directory, settings, self.builder, self.transport, clock
        )

    def reload(self, settings: Settings) -> None:
        """Take new templates and keys; ConfigError (the old ones kept) if a key is bad."""
        signer = signer_for(settings)
        self.renderer = Renderer(settings.templates.directory)
        self.signer = signer

    async def close(self) -> None:
        await self.transport.close()
