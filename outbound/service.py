"""The outbound side as the daemon runs it: templates, render pool, DKIM signer and relay."""

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
from outbound.owner_templates import POOL_PRELOAD, OwnerTemplates
from outbound.relay import RelayTransport
from outbound.render_pool import RenderPool
from outbound.rendering import Renderer
from outbound.transports import build_transport


def signer_for(settings: Settings) -> Signer:
    """A signer with every sender domain's keys, creating the missing default ones."""
    return Signer(load_keys(settings.dkim_keys, generate=True))


class OutboundService:
    """Owns what e-mail jobs need. A reload takes new templates and DKIM keys at
    once; the relay transport (its connections) and the render pool (its processes)
    last until the process stops."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        redis: Redis,
        keys: Keys,
        directory: AccountDirectory,
        clock: Clock,
    ) -> None:
        current = settings()
        self.settings = settings
        self.signer = signer_for(current)
        self.pool = RenderPool(current.templates.render_processes, POOL_PRELOAD)
        self.templates = self._templates(current)
        self.transport: RelayTransport = build_transport(current.relay)
        self.builder = MessageBuilder(settings, lambda: self.templates, lambda: self.signer, clock)
        self.email = EmailHandler(
            redis, keys, directory, settings, self.builder, self.transport, clock
        )

    def reload(self, settings: Settings) -> None:
        """Take new templates and keys; ConfigError (the old ones kept) if a key is bad."""
        signer = signer_for(settings)
        self.templates = self._templates(settings)
        self.signer = signer

    def _templates(self, settings: Settings) -> OwnerTemplates:
        return OwnerTemplates(
            Renderer(settings.templates.directory), self.pool, lambda: self.settings().templates
        )

    async def close(self) -> None:
        await self.transport.close()
        await self.pool.close()
