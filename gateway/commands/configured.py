"""Running a `mailgw` command that reads the configuration and talks to Redis, each
imported only when it runs, with every command's errors told the same way."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TextIO

from redis.exceptions import RedisError

from gateway.commands import outbound_args
from gateway.config import load_config
from gateway.errors import ConfigError, GatewayError


def run_configured(args: argparse.Namespace, path: Path | None, out: TextIO) -> int:
    """Run `args.command` with the configuration at `path`; its exit status."""
    try:
        if args.command == "enqueue":
            from gateway.commands.queue_commands import read_input

            args.text, args.source = read_input(args.file)
        config = load_config(path)
        if args.command == "queue":
            from gateway.commands.queue_depths import cmd_queue

            return asyncio.run(cmd_queue(config, args, out))
        if args.command in outbound_args.COMMANDS:
            from gateway.commands import outbound

            if args.command == "dkim":
                return outbound.cmd_dkim(config, args, out)
            if args.command == "suppression":
                from gateway.commands.suppression import cmd_suppression

                return asyncio.run(cmd_suppression(config, args, out))
            return asyncio.run(outbound.cmd_render(config, args, out))
        from gateway.commands.queue_commands import COMMANDS

        return asyncio.run(COMMANDS[args.command](config, args, out))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"mailgw: {exc}", file=sys.stderr)
        return 1
    except (RedisError, OSError) as exc:
        print(f"mailgw: Redis: {exc}", file=sys.stderr)
        return 1
