"""What every `mailgw` command shares: its error type and its Redis connection."""

from __future__ import annotations

from redis.asyncio import Redis

from gateway.config import Config
from gateway.embedded_redis import socket_path
from gateway.errors import GatewayError
from gateway.redis_conn import connect


class CommandError(GatewayError):
    """A command that cannot do what was asked; its message goes to stderr."""


def redis_for_cli(config: Config) -> Redis:
    """The configured Redis, or the embedded one if a daemon is running it."""
    settings = config.settings
    if settings.redis.url:
        return connect(settings.redis.url)
    sock = socket_path(settings.state_dir)
    if not sock.exists():
        raise CommandError(
            f"no Redis URL is configured and the embedded Redis is not running ({sock}"
            " is missing): start `mailgw run` first, or set redis.url"
        )
    return connect(f"unix://{sock}")
