"""The outbound side as the daemon runs it: templates, render pool and relay."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from redis.asyncio import Redis

from gateway.bounce_matching import Rule
from gateway.clock import Clock
from gateway.directory import AccountDirectory
from gateway.keys import Keys
from gateway.settings import Settings
from outbound.builder import MessageBuilder
from outbound.dkim import Signer
from outbound.email_handler import EmailHandler
from outbound.owner_templates import POOL_PRELOAD, OwnerTemplates
from outbound.relay import RelayTransport
from outbound.render_pool import RenderPool
from outbound.rendering import Renderer
from outbound.transports import build_transport


class OutboundService:
    """Owns what e-mail jobs need. A reload takes new templates; the relay transport (its
    connections) and the render pool (its processes) last until the process stops. The
    DKIM signer is the daemon's (shared with the forwarded replies), read at each message."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        signer: Callable[[], Signer],
        redis: Redis,
        keys: Keys,
        directory: AccountDirectory,
        clock: Clock,
        bounce_rules: Callable[[], Sequence[Rule]],
    ) -> None:
        current = settings()
        self.settings = settings
        self.pool = RenderPool(current.templates.render_processes, POOL_PRELOAD)
        self.templates = self._templates(current)
        self.transport: RelayTransport = build_transport(current.relay)
        self.builder = MessageBuilder(settings, lambda: self.templates, signer, clock)
        self.email = EmailHandler(
            redis, keys, directory, settings, self.builder, self.transport, clock, bounce_rules
        )

    def reload(self, settings: Settings) -> None:
        """Take new templates."""
        self.templates = self._templates(settings)

    def _templates(self, settings: Settings) -> OwnerTemplates:
        return OwnerTemplates(
            Renderer(settings.templates.directory), self.pool, lambda: self.settings().templates
        )

    async def close(self) -> None:
        await self.transport.close()
        await self.pool.close()
