"""Inbound throughput: Postfix's smtp-source sending clients' replies to a valid reply address
to `mailgw run --role inbound`, and the same command to a private Postfix's smtpd, in one run.

    python bench/inbound.py [--messages 5000] [--sessions 20] [--rounds 3] [--processes N]
                            [--appendfsync everysec|always]

The gateway serves SMTP in inbound.processes processes (`--processes`; by default one per CPU,
as Postfix runs an smtpd per connection on every CPU) and answers 250 once a message is in its
Redis stream (Redis appending to its AOF, fsync every second, as the daemon's embedded Redis
does; `--appendfsync always` has Redis fsync before it answers, as Postfix does); Postfix once
cleanup has written and fsync'ed its queue file, in the hold queue so that nothing is
delivered. Each message comes on its own connection, as replies from many clients'
servers do. The two servers take turns, `--rounds` times each, and the median round counts, so
that a passing disturbance on the machine weighs on neither side alone. Needs Debian's postfix
(smtp-source, and a private Postfix instance, which needs root). Prints accepted messages/s
for both, their ratio (target: at least 1) and each side's CPU time per message, the gateway's
split between its SMTP processes (the daemon and the others it starts) and its Redis.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from redis import Redis  # noqa: E402

from bench.private_postfix import running_postfix, tool, wait_port  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.keys import Keys  # noqa: E402
from gateway.message_tokens import new_token  # noqa: E402
from gateway.reply_tokens import (  # noqa: E402
    MessageReference,
    ReplyTarget,
    make_local_part,
    reply_secrets,
)
from tests.redis_server import free_port, start_redis  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "atelier-elodie"
CALENDAR = "101"
REPLY_DOMAIN = "reply.acuityscheduling.com"
SENDER = "zoe.martin@example.org"


@dataclass(frozen=True)
class Server:
    """An SMTP server under test."""

    name: str
    port: int
    # whose CPU time is counted, with all their descendants, by part of the server
    parts: dict[str, int]
    # how many messages it holds
    stored: Callable[[], int]

    def cpu(self) -> dict[str, float]:
        return {part: cpu_seconds(pid) for part, pid in self.parts.items()}


def cpu_seconds(root: int) -> float:
    """CPU time of `root` and all its descendants, those that have already exited and been
    waited for included (Postfix's master replaces each smtpd after max_use clients)."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # it has exited meanwhile
                continue
    tree, grew = {root}, True
    while grew:
        found = {pid for pid, fields in stats.items() if int(fields[1]) in tree}
        grew = not found <= tree
        tree |= found
    # utime, stime, and those of the children waited for
    ticks = sum(sum(int(f) for f in stats[pid][11:15]) for pid in tree if pid in stats)
    return ticks / os.sysconf("SC_CLK_TCK")


def reply(recipient: str) -> bytes:
    """A client's reply to a reminder, about 2 KB, as a mail client writes it."""
    message = EmailMessage()
    message["From"] = Address("Zoé Martin", addr_spec=SENDER)
    message["To"] = Address("L'Atelier d'Élodie & Fils", addr_spec=recipient)
    message["Subject"] = "Re: Rappel : votre rendez-vous du mardi 12 janvier"
    message["Date"] = "Sun, 10 Jan 2027 10:12:45 +0100"
    message["Message-ID"] = "<CAF3x9Jq0ZpV7kQ2mWn8@mail.example.org>"
    message["In-Reply-To"] = "<k4q7m2x9d3f6h8j2n5p7r9t3v6@acuityscheduling.com>"
    message["References"] = "<k4q7m2x9d3f6h8j2n5p7r9t3v6@acuityscheduling.com>"
    message["User-Agent"] = "Mozilla Thunderbird"
    quoted = "\n".join(
        f"> {line}".rstrip()
        for line in (
            "Bonjour Zoé,",
            "",
            "Nous vous rappelons votre rendez-vous « Coupe femme » avec Élodie",
            "le mardi 12 janvier 2027 à 14:30 (heure de Paris).",
            "",
            "Adresse : 12 rue de la Paix, 75002 Paris",
            "",
            "Pour annuler : https://acuityscheduling.com/c/3f9d2a7c4b1e",
            "Pour changer d'horaire : https://acuityscheduling.com/r/3f9d2a7c4b1e",
            "",
            "Merci d'arriver cinq minutes en avance. En cas d'empêchement, prévenez-nous",
            "au moins 24 heures à l'avance : le créneau pourra être proposé à un autre client.",
            "",
            "À bientôt,",
            "L'Atelier d'Élodie & Fils",
            "01 42 60 00 00 - https://atelier-elodie.fr",
            "",
            "--",
            "Vous recevez ce message parce que vous avez pris rendez-vous chez",
            "L'Atelier d'Élodie & Fils. Pour ne plus recevoir de rappels :",
            "https://mail.acuityscheduling.com/unsubscribe/k4q7m2x9d3f6h8j2n5p7r9t3v6",
        )
    )
    message.set_content(
        "Bonjour,\n\n"
        "Merci pour le rappel. Serait-il possible de décaler le rendez-vous d'une\n"
        "demi-heure, à 15:00 ? Je sors du travail un peu plus tard ce jour-là. Sinon\n"
        "je garde 14:30, ce n'est pas grave.\n\n"
        "Et pouvez-vous me dire si je peux venir avec ma fille (8 ans) ? Elle\n"
        "restera sagement dans la salle d'attente.\n\n"
        "Bonne journée,\nZoé Martin\n06 12 34 56 78\n\n"
        "Le 10/01/2027 à 09:00, L'Atelier d'Élodie & Fils a écrit :\n"
        f"{quoted}\n",
        cte="quoted-printable",
    )
    message["Content-Language"] = "fr"
    return message.as_bytes()


def smtp_source(port: int, message: Path, recipient: str, messages: int, sessions: int) -> float:
    """Seconds smtp-source takes to have `messages` accepted, one connection each."""
    start = time.perf_counter()
    subprocess.run(
        [tool("smtp-source"), "-s", str(sessions), "-m", str(messages), "-F", str(message),
         "-M", "mail.example.org", "-f", SENDER, "-t", recipient, f"127.0.0.1:{port}"],
        check=True,
    )  # fmt: skip
    return time.perf_counter() - start


# --- the gateway ---


def gateway_config(
    directory: Path, redis_port: int, port: int, sessions: int, processes: str
) -> Path:
    (directory / "accounts").mkdir()
    shutil.copy(ROOT / f"config/accounts/{ACCOUNT}.toml", directory / "accounts")
    key = directory / "reply-tokens.key"
    key.write_bytes(base64.b64encode(secrets.token_bytes(48)) + b"\n")
    config = directory / "mailgw.toml"
    config.write_text(
        f"""
state_dir = "state"
[redis]
url = "redis://127.0.0.1:{redis_port}/0"
[accounts]
directory = "accounts"
[[sender_domains]]
domain = "acuityscheduling.com"
[[sender_domains.dkim]]
selector = "mailgw-ed25519"
algorithm = "ed25519"
[inbound]
listen = "127.0.0.1:{port}"
hostname = "mx.bench.localdomain"
reply_domain = "{REPLY_DOMAIN}"
public_url = "https://mail.acuityscheduling.com"
web_listen = "127.0.0.1:{free_port()}"
max_connections_per_client = {sessions}
processes = {processes}
[reply_tokens]
secret_files = ["{key.name}"]
[sms]
webhook_listen = "127.0.0.1:{free_port()}"
[metrics]
listen = "127.0.0.1:{free_port()}"
""",
        encoding="utf-8",
    )
    return config


def reply_address(config: Path) -> str:
    """A reply address for an appointment of calendar 101, signed with the daemon's key."""
    expires = int(time.time()) + 30 * 86400
    local = make_local_part(
        ReplyTarget(ACCOUNT, CALENDAR, "48213377"),
        reply_secrets(load_config(config).settings)[0],
        expires,
        reference=MessageReference(new_token(), expires),
    )
    return f"{local}@{REPLY_DOMAIN}"


@contextmanager
def gateway(
    directory: Path, sessions: int, processes: str, appendfsync: str
) -> Iterator[tuple[Server, str]]:
    """`mailgw run --role inbound` with its own Redis, and a reply address it accepts;
    `processes` is its inbound.processes, as TOML."""
    redis_process, redis_port = start_redis(directory)
    redis = Redis(port=redis_port)
    try:
        # as the daemon's embedded Redis (gateway/embedded_redis.py) by default
        redis.config_set("appendonly", "yes")
        redis.config_set("appendfsync", appendfsync)
        port = free_port()
        config = gateway_config(directory, redis_port, port, sessions, processes)
        log = directory / "mailgw.log"
        daemon = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config),
             "run", "--role", "inbound"],
            cwd=ROOT,
            stderr=log.open("w"),
        )  # fmt: skip
        try:
            wait_port(port, daemon, log)
            # turning the AOF on rewrites it once
            while redis.info("persistence")["aof_rewrite_in_progress"]:
                time.sleep(0.05)
            yield (
                Server(
                    "mailgw",
                    port,
                    {"SMTP processes": daemon.pid, "Redis": redis_process.pid},
                    lambda: redis.xlen(Keys().inbound),
                ),
                reply_address(config),
            )
        finally:
            daemon.terminate()
            daemon.wait(60)
    finally:
        redis.close()
        redis_process.terminate()
        redis_process.wait()


# --- Postfix ---


@contextmanager
def postfix(directory: Path, sessions: int) -> Iterator[Server]:
    """Postfix's smtpd taking mail for the reply domain from anyone, into the hold queue."""
    port = free_port()
    holding = f"""myhostname = mx.bench.localdomain
mynetworks = 127.0.0.1/32
relay_domains = {REPLY_DOMAIN}
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access static:HOLD
# Like the gateway: the per-client connection limit counts loopback too; no DNS lookups.
smtpd_client_event_limit_exceptions =
smtpd_client_connection_count_limit = {sessions}
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
"""
    with running_postfix(directory, port, holding) as master:
        hold = directory / "spool/hold"
        yield Server(
            "Postfix",
            port,
            {"master and its daemons": master.pid},
            lambda: sum(1 for path in hold.rglob("*") if path.is_file()),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000, help="per server and round")
    parser.add_argument("--sessions", type=int, default=20, help="smtp-source's parallel sessions")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--processes", default="auto", help='the gateway\'s inbound.processes (default "auto")'
    )
    parser.add_argument(
        "--appendfsync",
        choices=("everysec", "always"),
        default="everysec",
        help="when the gateway's Redis fsyncs its AOF (default everysec, as the embedded one)",
    )
    args = parser.parse_args()
    with ExitStack() as stack:
        gateway_dir, postfix_dir = (
            Path(stack.enter_context(tempfile.TemporaryDirectory())) for _ in range(2)
        )
        processes = args.processes if args.processes.isdigit() else f'"{args.processes}"'
        mailgw, recipient = stack.enter_context(
            gateway(gateway_dir, args.sessions, processes, args.appendfsync)
        )
        reference = stack.enter_context(postfix(postfix_dir, args.sessions))
        message = gateway_dir / "reply.eml"
        message.write_bytes(reply(recipient))
        rates: dict[str, list[float]] = {mailgw.name: [], reference.name: []}
        cpu = {server.name: dict.fromkeys(server.parts, 0.0) for server in (mailgw, reference)}
        for _ in range(args.rounds):
            for server in (mailgw, reference):
                before = server.cpu()
                seconds = smtp_source(server.port, message, recipient, args.messages, args.sessions)
                for part, spent in server.cpu().items():
                    cpu[server.name][part] += spent - before[part]
                rates[server.name].append(args.messages / seconds)
        for server in (mailgw, reference):
            if (stored := server.stored()) != args.rounds * args.messages:
                sys.exit(f"{server.name} holds {stored} messages of {args.rounds * args.messages}")
        size = len(message.read_bytes())
    print(
        f"smtp-source -s {args.sessions} -m {args.messages}: replies of {size} bytes to one reply"
        " address, one connection per message;"
        f" {args.rounds} rounds per server, taking turns\n"
        f"mailgw: `mailgw run --role inbound`, inbound.processes = {processes},"
        " reply token checked at RCPT (HMAC, account known), 250 once the message is in its"
        f" Redis stream (AOF, appendfsync {args.appendfsync});"
        " CPU of the daemon and its Redis\n"
        "Postfix: smtpd, relay domain checked at RCPT, no DNS lookups, 250 once cleanup has"
        " written and fsync'ed the queue file (hold queue); CPU of master and all its daemons\n"
    )
    print(f"{'':<10}{'msg/s (median)':>16}   {'rounds':<24}{'CPU s':>8}{'CPU ms/msg':>12}")
    messages = args.rounds * args.messages
    for name, figures in rates.items():
        rounds = " ".join(f"{rate:.0f}" for rate in figures)
        total = sum(cpu[name].values())
        print(
            f"{name:<10}{statistics.median(figures):>16,.0f}   {rounds:<24}"
            f"{total:>8.2f}{total * 1000 / messages:>12.2f}"
        )
        for part, spent in cpu[name].items():
            print(f"  {part:<50}{spent:>8.2f}{spent * 1000 / messages:>12.2f}")
    ratio = statistics.median(rates[mailgw.name]) / statistics.median(rates[reference.name])
    print(f"\nratio mailgw / Postfix = {ratio:.2f} (target: at least 1)")


if __name__ == "__main__":
    main()
