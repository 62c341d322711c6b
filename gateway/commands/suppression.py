"""`mailgw suppression`: the addresses not sent to and the numbers not texted, shown,
listed, exported, imported, added and removed by an administrator."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any, TextIO

from gateway.clock import SystemClock, rfc3339
from gateway.commands.support import CommandError, redis_for_cli
from gateway.config import Config
from gateway.keys import Keys
from outbound.sms.optouts import SmsOptOuts
from outbound.suppression import Suppression, SuppressionList
from outbound.suppression_csv import CsvRefused, from_csv, to_csv


async def cmd_suppression(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    if args.bounce_class and args.action not in ("list", "export"):
        raise CommandError("--class is for list and export")
    redis = redis_for_cli(config)
    keys = Keys(config.settings.redis.prefix)
    suppressions = SuppressionList(redis, keys)
    history_ttl = int(config.settings.queue.history_ttl.total_seconds())
    numbers = SmsOptOuts(redis, keys, SystemClock(), lambda: history_ttl)
    try:
        if args.action == "list":
            for entry in await _entries(suppressions, args):
                out.write(entry.to_json() + "\n")
            if args.account is None and args.bounce_class is None:
                for number, why in (await numbers.entries()).items():
                    out.write(json.dumps({"number": number, **why}, ensure_ascii=False) + "\n")
            return 0
        if args.action == "export":
            return await _export(config, suppressions, args, out)
        if not args.address:
            raise CommandError(f"suppression {args.action} needs an ADDRESS, +NUMBER or FILE")
        if args.action == "import":
            return await _import(config, suppressions, args.address, out)
        if args.address.startswith("+"):
            return await _number(numbers, args, out)
        if args.action == "show":
            return await _show(config, suppressions, args.address, out)
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
        out.write((await suppressions.add(entry)).to_json() + "\n")
        return 0
    finally:
        await redis.aclose()


async def _entries(suppressions: SuppressionList, args: argparse.Namespace) -> list[Suppression]:
    entries = await suppressions.entries(args.account)
    return [e for e in entries if args.bounce_class in (None, e.bounce_class)]


async def _accounts(config: Config, suppressions: SuppressionList) -> list[str]:
    """Every account, of the files and of the directory in Redis."""
    stored: Any = await suppressions.redis.hkeys(suppressions.keys.accounts)
    return sorted({*config.accounts, *stored})


async def _show(config: Config, suppressions: SuppressionList, address: str, out: TextIO) -> int:
    entries = await suppressions.find(address, await _accounts(config, suppressions))
    if not entries:
        raise CommandError(f"{address} is not suppressed")
    for entry in entries:
        out.write(entry.to_json() + "\n")
    return 0


async def _export(
    config: Config, suppressions: SuppressionList, args: argparse.Namespace, out: TextIO
) -> int:
    """The list of every account's and each account's opt-outs (or only --account's)."""
    entries = await _entries(suppressions, args)
    if args.account is None:
        for account in await _accounts(config, suppressions):
            entries += [
                e
                for e in await suppressions.entries(account)
                if args.bounce_class in (None, e.bounce_class)
            ]
    text = to_csv(entries)
    if args.address in (None, "-"):
        out.write(text)
        return 0
    _write(args.address, text)
    out.write(f"exported {len(entries)} entries to {args.address}\n")
    return 0


async def _import(config: Config, suppressions: SuppressionList, path: str, out: TextIO) -> int:
    try:
        entries = from_csv(_read(path), path, SystemClock().now(), config.settings.suppression)
    except CsvRefused as exc:
        raise CommandError("nothing was imported:\n" + "\n".join(exc.problems)) from None
    out.write(f"imported {await suppressions.put(entries)} entries\n")
    return 0


def _read(path: str) -> str:
    try:
        # utf-8-sig: spreadsheets write a byte-order mark first.
        return Path(path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise CommandError(f"{path}: not UTF-8 (byte {exc.start})") from None


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror}") from exc


async def _number(numbers: SmsOptOuts, args: argparse.Namespace, out: TextIO) -> int:
    """A phone number (E.164) is added to or removed from the SMS opt-outs, which stop
    every text to it, as a STOP from it would."""
    if not re.fullmatch(r"\+[1-9][0-9]{6,14}", args.address):
        raise CommandError(f"{args.address} is not an E.164 number (+ and 7 to 15 digits)")
    if args.action == "show":
        why = (await numbers.entries()).get(args.address)
        if why is None:
            raise CommandError(f"{args.address} has not opted out")
        out.write(json.dumps({"number": args.address, **why}, ensure_ascii=False) + "\n")
        return 0
    if args.action == "remove":
        if not await numbers.opt_in(args.address):
            raise CommandError(f"{args.address} has not opted out")
        out.write(f"removed {args.address}\n")
        return 0
    dropped = await numbers.opt_out(args.address, args.detail or "added by an administrator")
    out.write(f"added {args.address}; {dropped} waiting text(s) dropped\n")
    return 0
