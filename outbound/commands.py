"""`mailgw` commands of the outbound side: suppression, render, dkim keygen."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from gateway.cli_support import CommandError, redis_for_cli
from gateway.clock import SystemClock, rfc3339
from gateway.config import Config
from gateway.keys import Keys
from outbound.suppression import Suppression, SuppressionList


def add_parsers(command: Any) -> None:
    """Add this side's commands through the CLI's `command(name, summary)` factory."""
    suppression = command("suppression", "addresses not sent to, with the reason")
    suppression.add_argument("action", choices=("list", "add", "remove"))
    suppression.add_argument("address", nargs="?", help="the address (add, remove)")
    suppression.add_argument(
        "--account",
        help="an account's opt-outs (unsubscribes, complaints) instead of the hard bounces",
    )
    suppression.add_argument(
        "--reason",
        choices=("manual", "hard_bounce", "unsubscribe", "complaint"),
        default="manual",
        help="why (add); unsubscribe and complaint need --account",
    )
    suppression.add_argument("--detail", default="", help="free text kept with it (add)")


async def cmd_suppression(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    redis = redis_for_cli(config)
    suppressions = SuppressionList(redis, Keys(config.settings.redis.prefix))
    try:
        if args.action == "list":
            for entry in await suppressions.entries(args.account):
                out.write(entry.to_json() + "\n")
            return 0
        if not args.address:
            raise CommandError(f"suppression {args.action} needs an ADDRESS")
        if args.action == "remove":
            if not await suppressions.remove(args.address, args.account):
                raise CommandError(f"{args.address} is not suppressed")
            out.write(f"removed {args.address}\n")
            return 0
        if args.reason in ("unsubscribe", "complaint") and not args.account:
            raise CommandError(f"--reason {args.reason} needs --account")
        entry = Suppression(
            args.address, args.reason, args.detail, rfc3339(SystemClock().now()), args.account
        )
        await suppressions.add(entry)
        out.write(entry.to_json() + "\n")
        return 0
    finally:
        await redis.aclose()


def read_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CommandError(f"{path}: {exc}") from exc
