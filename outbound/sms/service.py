"""The SMS side as the daemon runs it: the configured provider, the job handler, the webhook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from gateway.clock import Clock
from gateway.config import Config
from gateway.directory import AccountDirectory
from gateway.keys import Keys
from gateway.settings import Settings
from gateway.sms_provider import ProviderContext, SmsProvider, find_plugin
from outbound.owner_templates import OwnerTemplates
from outbound.sms.handler import SmsHandler


def provider_context(settings: Settings) -> ProviderContext:
    return ProviderContext(settings.sms.provider, settings.sms.webhook_url, settings.state_dir)


def make_provider(config: Config) -> SmsProvider:
    """The configured provider, made with its checked options (on the running loop)."""
    settings = config.settings
    plugin = find_plugin(settings.sms.provider)
    create: Callable[[Any, ProviderContext], SmsProvider] = plugin.create
    return create(config.sms_options, provider_context(settings))


class SmsService:
    """Owns the provider; it lasts until the process stops (its options are read at start)."""

    def __init__(
        self,
        config: Config,
        redis: Redis,
        keys: Keys,
        directory: AccountDirectory,
        settings: Callable[[], Settings],
        clock: Clock,
        templates: Callable[[], OwnerTemplates],
    ) -> None:
        self.provider = make_provider(config)
        self.handler = SmsHandler(
            redis,
            keys,
            directory,
            settings,
            lambda: self.provider,
            provider_context(config.settings),
            clock,
            templates,
        )

    async def close(self) -> None:
        await self.provider.close()
