"""Texts through real `mailgw run` processes and a loopback Twilio (tests/twilio_api.py) that
fails as real providers do: 5xx, 429 with any Retry-After (0, negative, unreadable, huge),
429 for ever for some numbers, answers lost after the message was taken (the connection
dropped, or the answer later than the gateway waits), connections dropped before it. What
the endpoint took, per text, is compared with the events (tests/test_sms_faults.py,
bench/sms.py --faults)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.fault_harness import GatewayProcess, wait_for
from tests.redis_server import free_port
from tests.twilio_api import Behaviour, Drop, Scripted, Slow, TwilioApi

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f3a1c0ffee0ddba11c0ffee0ddba11f3"
# What the gateway waits for Twilio's answer, and how late a slow answer comes.
TIMEOUT = 0.5
SLOW = 1.0
MAX_ATTEMPTS = 6
# Faults one text meets at most, so that every text but those throttled for ever goes
# through before its attempts run out (0.3^6 of them would not otherwise).
MOST_FAULTS = 3

ACCOUNT = """
business_name = "L'Atelier d'Élodie & Fils"
owner_email = "elodie@example.com"
plan = "growing"
timezone = "Europe/Paris"
locale = "fr"
country = "FR"
verified = true
"""

# Each fault, as often as the others, among the failed requests.
FAULTS: list[tuple[str, Behaviour]] = [
    ("5xx", Scripted(503, 20503, "Service Unavailable")),
    ("429, Retry-After: 0", Scripted(429, 20429, "Too Many Requests", {"Retry-After": "0"})),
    ("429, Retry-After: -3", Scripted(429, 20429, "Too Many Requests", {"Retry-After": "-3"})),
    ("429, Retry-After: soon", Scripted(429, 20429, "Too Many Requests", {"Retry-After": "soon"})),
    (
        "429, Retry-After: 10^8",
        Scripted(429, 20429, "Too Many Requests", {"Retry-After": "100000000"}),
    ),
    ("taken, connection dropped", Drop(accepted=True)),
    ("taken, answer too late", Slow(SLOW)),
    ("dropped before taken", Drop(accepted=False)),
]


@dataclass
class Figures:
    """What became of the texts."""

    texts: int
    # Texts the endpoint took, and of those, copies beyond the first.
    accepted: int = 0
    second_copies: int = 0
    # Requests answered with each fault (a text may meet several).
    faults: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    lookups: int = 0
    # Texts answered 429 on every request, and those tried more than max_attempts times.
    forever: int = 0
    endless: int = 0
    most_attempts: int = 0
    # Texts taken that have their `sent` event with the endpoint's id.
    sent_with_id: int = 0
    reports: int = 0
    reports_matched: int = 0
    # Jobs with no final event (sent, or failed when dead-lettered).
    unsettled: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        return [
            f"{self.texts} texts, {self.requests} requests ({self.lookups} lookups) in "
            f"{self.seconds:.1f} s",
            "faults: " + ", ".join(f"{name} {count}" for name, count in self.faults.items()),
            f"accepted {self.accepted}, second copies {self.second_copies}",
            f"429 for ever: {self.forever} texts, at most {self.most_attempts} attempts per"
            f" text (max_attempts {MAX_ATTEMPTS}), endless {self.endless}",
            f"sent events with the provider's id: {self.sent_with_id} of {self.accepted}",
            f"delivery reports: {self.reports} posted, {self.reports_matched} matched to"
            f" their text",
            f"jobs without a final event: {self.unsettled}",
        ]


def number(index: int) -> str:
    return f"+336{10_000_000 + index}"


def write_config(directory: Path, redis_url: str, api: TwilioApi, webhook: int) -> Path:
    (directory / "accounts").mkdir(parents=True, exist_ok=True)
    (directory / "accounts" / "salon.toml").write_text(ACCOUNT, encoding="utf-8")
    (directory / "twilio.token").write_text(TOKEN + "\n")
    config = directory / "mailgw.toml"
    config.write_text(
        f"""
state_dir = "state"
[redis]
url = "{redis_url}"
[queue]
block_timeout = "0.2s"
scheduler_interval = "0.1s"
shutdown_grace = "10s"
max_attempts = {MAX_ATTEMPTS}
backoff_initial = "0.2s"
backoff_max = "1s"
[metrics]
enabled = false
[inbound]
listen = "127.0.0.1:{free_port()}"
web_listen = "127.0.0.1:{free_port()}"
[sms]
provider = "twilio"
webhook_listen = "127.0.0.1:{webhook}"
webhook_url = "http://127.0.0.1:{webhook}"
[sms.twilio]
account_sid = "{SID}"
auth_token_file = "twilio.token"
from_number = "+15005550006"
base_url = "{api.url}"
timeout = "{TIMEOUT}s"
""",
        encoding="utf-8",
    )
    return config


class Faulty:
    """The endpoint's choice for each request: a fault for `rate` of them, 429 for ever for
    the texts to `forever` numbers."""

    def __init__(self, rate: float, forever: set[str], seed: int) -> None:
        self.rate = rate
        self.forever = forever
        self.random = random.Random(seed)
        self.met: Counter[str] = Counter()
        self.per_text: Counter[str] = Counter()

    def __call__(self, form: dict[str, str]) -> Behaviour | None:
        if form["To"] in self.forever:
            self.met["429 for ever"] += 1
            return Scripted(429, 20429, "Too Many Requests", {"Retry-After": "0"})
        if self.per_text[form["To"]] >= MOST_FAULTS or self.random.random() >= self.rate:
            return None
        name, behaviour = self.random.choice(FAULTS)
        self.met[name] += 1
        self.per_text[form["To"]] += 1
        return behaviour


async def run(
    directory: Path, redis_url: str, texts: int, rate: float, forever: int, within: float
) -> Figures:
    """`texts` texts (the first `forever` throttled for ever) through two gateway processes
    (roles all and outbound) and the faulty endpoint; their figures once every job is
    settled and every report answered, or `within` seconds have passed."""
    webhook = free_port()
    redis = Redis.from_url(redis_url, decode_responses=True)
    async with TwilioApi(SID, TOKEN) as api:
        faulty = Faulty(rate, {number(n) for n in range(forever)}, seed=texts)
        api.policy = faulty
        api.report_status = "delivered"
        config = write_config(directory, redis_url, api, webhook)
        gateways = [
            GatewayProcess(config, directory / "gateway-all.log", role="all"),
            GatewayProcess(config, directory / "gateway-outbound.log", role="outbound"),
        ]
        try:
            for gateway in gateways:
                # (blocking: nothing to serve yet)
                wait_for(lambda g=gateway: "mailgw running" in g.output(), "a gateway", 60)
            started = time.monotonic()
            pipe = redis.pipeline(transaction=False)
            for n in range(texts):
                text = f"Rappel n°{n} : demain à 14:30 chez Élodie."
                job = {"v": 1, "id": f"text-{n}", "kind": "sms.send", "account": "salon",
                       "to": number(n), "text": text}  # fmt: skip
                pipe.xadd("mailgw:jobs", {"job": json.dumps(job)})
            await pipe.execute()
            deadline = started + within
            while time.monotonic() < deadline:
                events = await _events(redis)
                matched = sum(1 for e in events if e["status"] == "delivered")
                if len(_settled(events)) == texts:
                    # the reports of the last texts are on their way; a few s at most
                    deadline = min(deadline, time.monotonic() + 10)
                    if matched >= len(api.requests):
                        break
                await asyncio.sleep(0.2)
            await api.reported()
            seconds = time.monotonic() - started
            figures = _figures(api, await _events(redis), texts, forever)
        finally:
            for gateway in gateways:
                gateway.stop()
            await redis.aclose()
    figures.faults = faulty.met
    figures.seconds = seconds
    return figures


async def _events(redis: Redis) -> list[dict[str, Any]]:
    return [json.loads(fields["event"]) for _, fields in await redis.xrange("mailgw:events")]


def _settled(events: list[dict[str, Any]]) -> set[str]:
    return {e["job"] for e in events if e["status"] in ("sent", "failed")}


def _figures(api: TwilioApi, events: list[dict[str, Any]], texts: int, forever: int) -> Figures:
    taken = Counter((r.form["To"], r.form["Body"]) for r in api.requests)
    posts = Counter(form["To"] for form in api.posts)
    numbers = {number(n): f"text-{n}" for n in range(texts)}
    sent = {(e["job"], e.get("message_id")) for e in events if e["status"] == "sent"}
    delivered = {(e["job"], e.get("message_id")) for e in events if e["status"] == "delivered"}
    forever_numbers = [number(n) for n in range(forever)]
    return Figures(
        texts=texts,
        accepted=len(taken),
        second_copies=sum(count - 1 for count in taken.values()),
        requests=len(api.posts),
        lookups=len(api.lookups),
        forever=forever,
        endless=sum(1 for n in forever_numbers if posts[n] > MAX_ATTEMPTS),
        most_attempts=max(posts.values(), default=0),
        sent_with_id=sum(1 for r in api.requests if (numbers[r.form["To"]], r.sid) in sent),
        reports=sum(1 for code in api.report_answers if code < 500),
        reports_matched=sum(1 for r in api.requests if (numbers[r.form["To"]], r.sid) in delivered),
        unsettled=texts - len(_settled(events)),
    )
