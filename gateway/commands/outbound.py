"""`mailgw` commands of the outbound side: render, dkim keygen (suppression: its own module)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from gateway.account import Account
from gateway.clock import SystemClock
from gateway.commands.support import CommandError, redis_for_cli
from gateway.config import Config
from gateway.directory import AccountDirectory
from gateway.jobs import EmailJob, SmsJob, parse_job
from gateway.keys import Keys
from gateway.settings import DkimKey
from outbound.builder import MessageBuilder, job_appointment
from outbound.dkim import Signer, dns_record, load_keys
from outbound.owner_templates import POOL_PRELOAD, OwnerTemplates
from outbound.render_pool import RenderPool
from outbound.rendering import Renderer
from outbound.samples import sample_context
from outbound.sms.compose import TextRefused, compose_text
from outbound.sms.segments import count


def read_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CommandError(f"{path}: {exc}") from exc


async def cmd_render(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    account = config.accounts.get(args.account)
    if account is None:
        redis = redis_for_cli(config)
        try:
            directory = AccountDirectory(
                redis, Keys(config.settings.redis.prefix), {}, cache_size=1, cache_ttl=1,
                timer=SystemClock().now,
            )  # fmt: skip
            account = await directory.get(args.account)
        finally:
            await redis.aclose()
    if account is None:
        raise CommandError(f"unknown account '{args.account}'")
    context = read_json(args.data) if args.data else sample_context(args.kind, account)
    settings = config.settings
    # An account's own templates render in the pool, within the daemon's limits (its
    # process starts only for them).
    pool = RenderPool(1, POOL_PRELOAD)
    templates = OwnerTemplates(
        Renderer(settings.templates.directory), pool, lambda: settings.templates
    )
    try:
        if args.channel == "sms":
            return await _render_text(account, args.kind, context, templates, out)
        return await _render_mail(config, account, args, context, templates, out)
    finally:
        await pool.close()


async def _render_mail(
    config: Config,
    account: Account,
    args: argparse.Namespace,
    context: dict[str, Any],
    templates: OwnerTemplates,
    out: TextIO,
) -> int:
    job_data = {
        "v": 1,
        "id": "render",
        "kind": "email.send",
        "account": account.id,
        "to": [args.to or _first_address(context)],
        "template": args.kind,
        "context": context,
        **({"locale": args.locale} if args.locale else {}),
    }
    job = parse_job(json.dumps(job_data))
    assert isinstance(job, EmailJob)
    settings = config.settings
    builder = MessageBuilder(
        lambda: settings, lambda: templates, lambda: Signer.from_settings(settings), SystemClock()
    )
    message = await builder.build(
        job, account, job_appointment(job), job.to[0], builder.identity(account)
    )
    if message is None:
        out.write(f"(the {args.kind} template renders empty: nothing would be sent)\n")
        return 0
    out.write(message.decode("utf-8", "replace").replace("\r\n", "\n"))
    return 0


async def _render_text(
    account: Account,
    kind: str,
    context: dict[str, Any],
    templates: OwnerTemplates,
    out: TextIO,
) -> int:
    job = parse_job(
        json.dumps(
            {"v": 1, "id": "render", "kind": "sms.send", "account": account.id,
             "to": "+0", "template": kind, "context": context}
        )
    )  # fmt: skip
    assert isinstance(job, SmsJob)
    try:
        composed = await compose_text(job, account, templates)
    except TextRefused as exc:
        raise CommandError(exc.reason) from exc
    segments = count(composed.text)
    out.write(composed.text + "\n")
    encoding = "GSM-7" if segments.encoding == "gsm7" else "UCS-2"
    print(
        f"({len(composed.text)} characters, {encoding}, {segments.parts} part(s))", file=sys.stderr
    )
    if composed.note:
        print(f"({composed.note})", file=sys.stderr)
    return 0


def _first_address(context: dict[str, Any]) -> str:
    for key in ("appointment", "order", "subscription"):
        value = context.get(key)
        if isinstance(value, dict):
            clients = value.get("clients") or [value.get("client") or {}]
            emails = clients[0].get("emails") if isinstance(clients[0], dict) else None
            if emails:
                return str(emails[0])
    raise CommandError("the context names no client address: give --to")


def cmd_dkim(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    """Create the key (if it does not exist yet) and print the record to publish."""
    configured = {(k.domain, k.selector): k for k in config.settings.dkim_keys}
    key = configured.get((args.domain.lower(), args.selector))
    if key is None:
        path = config.settings.state_dir / "dkim" / args.domain.lower() / f"{args.selector}.key"
        key = DkimKey(args.domain.lower(), args.selector, args.algorithm, path, True)
    elif key.algorithm != args.algorithm:
        raise CommandError(
            f"{args.domain} selector {args.selector} is configured as {key.algorithm}"
        )
    existed = key.path.exists()
    [signing_key] = load_keys([replace(key, generate=True)], generate=True)[key.domain]
    name, value = dns_record(signing_key)
    print(f"{'kept the existing' if existed else 'wrote'} key {key.path}", file=sys.stderr)
    # A DNS string holds at most 255 characters: a long record is several strings.
    strings = " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))
    out.write(f"{name}. IN TXT ( {strings} )\n")
    return 0
