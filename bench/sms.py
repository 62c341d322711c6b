"""SMS throughput: `sms.send` jobs (the example account's reminder, default text) through
the real handler (number check, opt-out check, text, segments, Redis records) and the
`file` provider, then the `twilio` provider to a loopback stand-in of Twilio's API; and
what composing the text and counting its segments cost per message.

    python bench/sms.py [--messages 5000] [--concurrency 32]
    python bench/sms.py --faults [--texts 2000] [--rate 0.3] [--forever 20]

Each figure comes with a reference measured in the same run, on the same machine:
- file: the same JSON lines appended with one os.write each, nothing else;
- twilio: bare treq POSTs of the same form to the same stand-in, same concurrency;
- segments: encoding each text to UTF-16 (what any length check must at least do).

With --faults: `--texts` texts through two `mailgw run` processes and a loopback Twilio
that fails `--rate` of its requests in every way a provider fails, the first `--forever`
texts answered 429 for ever (tests/sms_faults.py); prints what the endpoint took per
text against the events: second copies, attempts, sent events with the provider's id,
delivery reports matched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.timing import finished  # noqa: E402
from gateway.clock import SystemClock  # noqa: E402
from gateway.config import Config, load_config  # noqa: E402
from gateway.directory import AccountDirectory  # noqa: E402
from gateway.jobs import SmsJob, parse_job  # noqa: E402
from gateway.keys import Keys  # noqa: E402
from gateway.reactor import install_reactor, stop_reactor_threads  # noqa: E402
from gateway.redis_conn import connect  # noqa: E402
from outbound.owner_templates import POOL_PRELOAD, OwnerTemplates  # noqa: E402
from outbound.render_pool import RenderPool  # noqa: E402
from outbound.rendering import Renderer  # noqa: E402
from outbound.sms.compose import compose_text  # noqa: E402
from outbound.sms.segments import count  # noqa: E402
from outbound.sms.service import SmsService  # noqa: E402
from tests import sms_faults  # noqa: E402
from tests.redis_server import start_redis  # noqa: E402
from tests.twilio_api import TwilioApi  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f3a1c0ffee0ddba11c0ffee0ddba11f3"
UCS2 = "Rappel : rendez-vous à la Crêperie « Chez Gaël » demain à 14:30 avec Loïc. À bientôt !"


def jobs(messages: int) -> list[SmsJob]:
    start = datetime(2026, 11, 24, 13, 30, tzinfo=UTC)
    appointment = {
        "id": "appt-1",
        "calendar": "101",
        "type": "2001",
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=45)).isoformat(),
        "timezone": "Europe/Paris",
        "clients": [{"name": "Zoé Martin", "emails": ["zoe@example.com"]}],
    }
    made = []
    for index in range(messages):
        job = parse_job(
            json.dumps(
                {
                    "v": 1,
                    "id": f"sms-{index}",
                    "kind": "sms.send",
                    "account": "atelier-elodie",
                    "to": f"06 12 {index // 10000 % 100:02d} {index // 100 % 100:02d} "
                    f"{index % 100:02d}",
                    "template": "reminder",
                    "context": {"appointment": appointment},
                }
            )
        )
        assert isinstance(job, SmsJob)
        made.append(job)
    return made


async def timed(
    items: list[Any], concurrency: int, work: Callable[[Any], Awaitable[object]]
) -> float:
    """Items per second, `concurrency` at a time."""
    started = time.perf_counter()
    for first in range(0, len(items), concurrency):
        await asyncio.gather(*(work(item) for item in items[first : first + concurrency]))
    return len(items) / (time.perf_counter() - started)


def write_config(folder: Path, redis_url: str, sms: str) -> Path:
    folder.mkdir(parents=True)
    config = folder / "mailgw.toml"
    text = (ROOT / "config" / "mailgw.toml").read_text(encoding="utf-8")
    text = text.replace("# state_dir = ", f'state_dir = "{folder / "state"}"\n# ')
    text = text.replace('# url = ""', f'url = "{redis_url}"')
    # The example's [sms] section is replaced by the one measured.
    text = text[: text.index("[sms]")] + sms
    config.write_text(text, encoding="utf-8")
    (folder / "accounts").symlink_to(ROOT / "config" / "accounts")
    (folder / "twilio.token").write_text(TOKEN + "\n")
    return config


def owner_templates(config: Config) -> OwnerTemplates:
    """The example account sends the default text: the pool is never used."""
    return OwnerTemplates(
        Renderer(config.settings.templates.directory),
        RenderPool(1, POOL_PRELOAD),
        lambda: config.settings.templates,
    )


async def through_handler(
    folder: Path, redis_url: str, sms: str, messages: list[SmsJob], concurrency: int
) -> float:
    config = load_config(write_config(folder, redis_url, sms))
    redis = connect(redis_url, max_connections=concurrency + 8)
    keys = Keys(config.settings.redis.prefix)
    directory = AccountDirectory(
        redis, keys, config.accounts, cache_size=10, cache_ttl=3600, timer=SystemClock().now
    )
    templates = owner_templates(config)
    service = SmsService(
        config, redis, keys, directory, lambda: config.settings, SystemClock(), lambda: templates
    )
    try:
        return await timed(messages, concurrency, lambda job: service.handler.handle(job, 1))
    finally:
        await service.close()
        await templates.pool.close()
        await redis.flushdb()
        await redis.aclose()


async def bare_appends(path: Path, lines: list[bytes], concurrency: int) -> float:
    async def append(line: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    return await timed(lines, concurrency, append)


async def bare_posts(api: TwilioApi, forms: list[dict[str, str]], concurrency: int) -> float:
    import treq
    from twisted.internet import reactor
    from twisted.web.client import HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = concurrency
    url = f"{api.url}/2010-04-01/Accounts/{SID}/Messages.json"
    loop = asyncio.get_running_loop()

    async def post(form: dict[str, str]) -> None:
        response = await treq.post(url, data=form, auth=(SID, TOKEN), pool=pool).asFuture(loop)
        await treq.content(response).asFuture(loop)
        assert response.code == 201

    try:
        return await timed(forms, concurrency, post)
    finally:
        await pool.closeCachedConnections().asFuture(loop)


def per_message(texts: list[str], work: Callable[[str], object]) -> float:
    """Microseconds per call of `work` over `texts`."""
    started = time.perf_counter()
    for text in texts:
        work(text)
    return (time.perf_counter() - started) / len(texts) * 1e6


async def measure(redis_url: str, messages: int, concurrency: int) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="mailgw-sms-bench-"))
    install_reactor(asyncio.get_running_loop())
    batch = jobs(messages)
    config = load_config(write_config(folder / "probe", redis_url, '[sms]\nprovider = "file"\n'))
    account = config.accounts["atelier-elodie"]
    templates = owner_templates(config)
    composed = finished(compose_text(batch[0], account, templates)).text
    figures: dict[str, float] = {
        "compose_us": per_message(
            [""] * 2000, lambda _: finished(compose_text(batch[0], account, templates))
        ),
        "count_gsm_us": per_message([composed] * 20000, count),
        "count_ucs2_us": per_message([UCS2] * 20000, count),
        "encode_us": per_message([composed] * 20000, lambda t: t.encode("utf-16-le")),
        "parts": count(composed).parts,
    }
    outbox = folder / "file" / "outbox.jsonl"
    figures["file"] = await through_handler(
        folder / "file",
        redis_url,
        f'[sms]\nprovider = "file"\n[sms.file]\npath = "{outbox}"\n',
        batch,
        concurrency,
    )
    lines = outbox.read_bytes().splitlines(keepends=True)
    assert len(lines) == messages, f"{len(lines)} texts written, {messages} expected"
    figures["file_reference"] = await bare_appends(folder / "bare.jsonl", lines, concurrency)

    async with TwilioApi(SID, TOKEN) as api:
        figures["twilio"] = await through_handler(
            folder / "twilio",
            redis_url,
            f'[sms]\nprovider = "twilio"\n[sms.twilio]\naccount_sid = "{SID}"\n'
            f'auth_token_file = "{folder / "twilio" / "twilio.token"}"\n'
            f'from_number = "+15005550006"\nbase_url = "{api.url}"\n',
            batch,
            concurrency,
        )
        assert len(api.requests) == messages, f"{len(api.requests)} accepted, {messages} sent"
        forms = [request.form for request in api.requests]
        figures["twilio_reference"] = await bare_posts(api, forms, concurrency)
    return figures


def faults(texts: int, rate: float, forever: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        server, port = start_redis(Path(directory))
        loop = asyncio.new_event_loop()

        async def scenario() -> sms_faults.Figures:
            install_reactor(asyncio.get_running_loop())
            url = f"redis://127.0.0.1:{port}/0"
            return await sms_faults.run(Path(directory), url, texts, rate, forever, within=900)

        try:
            figures = loop.run_until_complete(scenario())
        finally:
            from twisted.internet import reactor

            stop_reactor_threads(reactor)
            loop.close()
            server.terminate()
            server.wait()
    print(f"faults at rate {rate:.0%}, queue.max_attempts {sms_faults.MAX_ATTEMPTS}")
    print("\n".join(figures.lines()))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--faults", action="store_true", help="the fault scenario instead")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--forever", type=int, default=20)
    args = parser.parse_args()
    if args.faults:
        faults(args.texts, args.rate, args.forever)
        return
    with tempfile.TemporaryDirectory() as directory:
        server, port = start_redis(Path(directory))
        loop = asyncio.new_event_loop()
        try:
            figures = loop.run_until_complete(
                measure(f"redis://127.0.0.1:{port}/0", args.messages, args.concurrency)
            )
        finally:
            from twisted.internet import reactor

            stop_reactor_threads(reactor)
            loop.close()
            server.terminate()
            server.wait()
    print(f"{args.messages} sms.send jobs (reminder, default text), concurrency {args.concurrency}")
    for name, key in (("file provider", "file"), ("twilio provider", "twilio")):
        ours, reference = figures[key], figures[f"{key}_reference"]
        print(
            f"{name:<18}{ours:>9,.0f} msg/s   reference {reference:>9,.0f}/s   "
            f"ratio {ours / reference:.2f}"
        )
    print(
        f"default text composed: {figures['compose_us']:.1f} µs/message "
        f"({figures['parts']:.0f} part)"
    )
    encode = figures["encode_us"]
    for label, key in (("GSM-7", "count_gsm_us"), ("UCS-2", "count_ucs2_us")):
        print(
            f"segments counted ({label}): {figures[key]:.2f} µs/message, "
            f"{figures[key] / encode:.1f}x a bare UTF-16 encode ({encode:.2f} µs)"
        )


if __name__ == "__main__":
    main()
