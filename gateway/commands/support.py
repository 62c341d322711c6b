"""What every `mailgw` command shares: its error type, its Redis connection, and the
configuration as the daemon takes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from redis.asyncio import Redis

from gateway.config import Config, load_config
from gateway.embedded_redis import socket_path
from gateway.errors import ConfigError, GatewayError
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


def load_checked_config(path: Path | None) -> Config:
    """load_config, and what the core cannot check alone: the template each follow-up names
    exists (templates are the outbound side's). ConfigError lists every problem."""
    config = load_config(path)
    # Imported here: the other commands need none of the outbound side.
    from outbound.template_files import follow_up_problems

    problems = follow_up_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def print_json(value: Any, out: TextIO) -> None:
    """`value` as one line of JSON, non-ASCII characters as they are."""
    out.write(json.dumps(value, ensure_ascii=False) + "\n")
