"""Outbound throughput: confirmation jobs (HTML, text, .ics, RSA and Ed25519 DKIM) until
Postfix's smtp-sink has accepted every message, against Postfix itself relaying the same
number of messages of the same size from smtp-source to smtp-sink, in the same run.

    python bench/outbound.py [--messages 2000] [--workers 2]

Needs Debian's postfix (smtp-sink, smtp-source, and a private Postfix instance started
here, which needs root). Prints both rates, their ratio, and the gateway's CPU per message.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from redis import Redis  # noqa: E402

from bench.private_postfix import running_postfix, tool, wait_port  # noqa: E402
from bench.timing import finished  # noqa: E402
from gateway.clock import SystemClock  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.jobs import EmailJob, parse_job  # noqa: E402
from outbound.builder import MessageBuilder, job_appointment  # noqa: E402
from outbound.dkim import Signer  # noqa: E402
from outbound.owner_templates import POOL_PRELOAD, OwnerTemplates  # noqa: E402
from outbound.render_pool import RenderPool  # noqa: E402
from outbound.rendering import Renderer  # noqa: E402
from outbound.samples import sample_context  # noqa: E402
from tests.redis_server import free_port, start_redis  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "atelier-elodie"


class Sink:
    """Postfix's smtp-sink, accepting everything and counting the messages."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.counter = directory / f"sink-{self.port}.out"
        self.process = subprocess.Popen(
            [tool("smtp-sink"), "-c", "-u", "root", f"127.0.0.1:{self.port}", "256"],
            stdout=self.counter.open("w"),
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port)

    def count(self) -> int:
        found = re.findall(rb"mesg=(\d+)", self.counter.read_bytes())
        return int(found[-1]) if found else 0

    def wait_for(self, count: int, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while self.count() < count:
            if time.monotonic() > deadline:
                sys.exit(f"smtp-sink got {self.count()} of {count} messages in {timeout}s")
            time.sleep(0.02)
        return time.perf_counter()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


# --- the gateway ---


def gateway_config(directory: Path, redis_url: str, sink_port: int, concurrency: int) -> Path:
    (directory / "accounts").mkdir()
    shutil.copy(ROOT / f"config/accounts/{ACCOUNT}.toml", directory / "accounts")
    config = directory / "mailgw.toml"
    config.write_text(
        f"""
state_dir = "state"
[log]
level = "warning"
[redis]
url = "{redis_url}"
[queue]
concurrency = {concurrency}
block_timeout = "0.05s"
[[sender_domains]]
domain = "acuityscheduling.com"
[[sender_domains.dkim]]
selector = "mailgw-rsa"
algorithm = "rsa"
[[sender_domains.dkim]]
selector = "mailgw-ed25519"
algorithm = "ed25519"
[relay]
transport = "smarthost"
max_connections_per_destination = 20
messages_per_connection = 1000
[relay.smarthost]
host = "127.0.0.1"
port = {sink_port}
starttls = "none"
# Several worker processes share this file: none serves the metrics port.
[metrics]
enabled = false
""",
        encoding="utf-8",
    )
    return config


def confirmation(index: int, context: dict[str, object]) -> dict[str, object]:
    return {
        "v": 1,
        "id": f"bench-{index}",
        "kind": "email.send",
        "account": ACCOUNT,
        "to": [f"client{index}@example.com"],
        "template": "confirmation",
        "context": context,
    }


def message_size(config_path: Path) -> int:
    """The size of one signed confirmation as the gateway builds it."""
    config = load_config(config_path)
    settings, account = config.settings, config.accounts[ACCOUNT]
    # The example account has no templates of its own: they render here, the pool unused.
    templates = OwnerTemplates(
        Renderer(settings.templates.directory),
        RenderPool(1, POOL_PRELOAD),
        lambda: settings.templates,
    )
    signer = Signer.from_settings(settings)
    builder = MessageBuilder(lambda: settings, lambda: templates, lambda: signer, SystemClock())
    job = parse_job(json.dumps(confirmation(0, sample_context("confirmation", account))))
    assert isinstance(job, EmailJob)
    message = finished(
        builder.build(job, account, job_appointment(job), job.to[0], builder.identity(account))
    )
    assert message is not None
    return len(message)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_gateway(directory: Path, messages: int, workers: int) -> tuple[float, int, float]:
    """Messages per second, message size, and worker CPU seconds per message."""
    redis_process, redis_port = start_redis(directory)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    sink = Sink(directory)
    config = gateway_config(directory, redis_url, sink.port, 64)
    size = message_size(config)
    account = load_config(config).accounts[ACCOUNT]
    context = sample_context("confirmation", account)
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "--config",
                str(config),
                "run",
                "--role",
                "outbound",
            ],
            cwd=ROOT,
        )
        for _ in range(workers)
    ]
    redis = Redis(port=redis_port)
    try:
        deadline = time.monotonic() + 60
        # Each worker is ready once it blocks reading the stream.
        while sum(c["cmd"] == "xreadgroup" for c in redis.client_list()) < workers:
            if time.monotonic() > deadline:
                sys.exit("the gateway's workers did not start")
            time.sleep(0.1)
        cpu_before = sum(cpu_seconds(p.pid) for p in processes)
        start = time.perf_counter()
        for first in range(0, messages, 500):
            with redis.pipeline(transaction=False) as pipe:
                for index in range(first, min(first + 500, messages)):
                    pipe.xadd("mailgw:jobs", {"job": json.dumps(confirmation(index, context))})
                pipe.execute()
        end = sink.wait_for(messages)
        cpu = sum(cpu_seconds(p.pid) for p in processes) - cpu_before
        sent = sum(1 for _, f in redis.xrange("mailgw:events") if b'"sent"' in f[b"event"])
        if sent != messages:
            sys.exit(f"the gateway reported {sent} messages sent of {messages}")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)
        redis.close()
        sink.stop()
        redis_process.terminate()
        redis_process.wait()
    return messages / (end - start), size, cpu / messages


# --- Postfix ---


def run_postfix(directory: Path, messages: int, size: int) -> float:
    """Messages per second through Postfix, smtp-source to smtp-sink."""
    sink = Sink(directory)
    port = free_port()
    relaying = f"""myhostname = bench.localdomain
relayhost = [127.0.0.1]:{sink.port}
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtp_tls_security_level = none
"""
    try:
        with running_postfix(directory, port, relaying):
            start = time.perf_counter()
            subprocess.run(
                [tool("smtp-source"), "-s", "20", "-m", str(messages), "-l", str(size),
                 "-f", "bench@example.org", "-t", "client@example.com", f"127.0.0.1:{port}"],
                check=True,
            )  # fmt: skip
            end = sink.wait_for(messages)
    finally:
        sink.stop()
    return messages / (end - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2, help="mailgw run --role outbound")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as gateway_dir, tempfile.TemporaryDirectory() as pf_dir:
        rate, size, cpu = run_gateway(Path(gateway_dir), args.messages, args.workers)
        reference = run_postfix(Path(pf_dir), args.messages, size)
    print(f"{args.messages} messages of {size} bytes; {args.workers} gateway worker processes")
    print(f"{'Postfix: smtp-source -> postfix -> smtp-sink':<48}{reference:>10,.0f} msg/s")
    print(f"{'mailgw: confirmation jobs -> smtp-sink':<48}{rate:>10,.0f} msg/s")
    print(f"ratio mailgw / Postfix = {rate / reference:.2f}")
    print(f"mailgw worker CPU per message: {cpu * 1000:.2f} ms")


if __name__ == "__main__":
    main()
