"""Fixtures: real Redis and DNS servers per test session, a settable clock, the reactor."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from gateway.config import load_config
from gateway.reactor import install_reactor, stop_reactor_threads
from gateway.redis_conn import connect
from tests.gateway_harness import Gateway, write_config
from tests.redis_server import free_port, start_redis
from tests.smtp_server import SmtpServer


@dataclass
class RedisServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port for the whole session."""
    directory = tmp_path_factory.mktemp("redis")
    process, port = start_redis(directory)
    yield RedisServer(f"redis://127.0.0.1:{port}/0", port, process)
    process.terminate()
    process.wait(10)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, emptied before the test."""
    client = SyncRedis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client made as the gateway makes its own (gateway.redis_conn)."""
    client = connect(redis_url)
    yield client
    await client.aclose()


class FixedClock:
    """A clock the test sets and moves."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.current = now

    def now(self) -> float:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += seconds


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
async def twisted_reactor() -> AsyncIterator[Any]:
    """Twisted's asyncio reactor on the session's loop, as the daemon runs it."""
    reactor = install_reactor(asyncio.get_running_loop())
    yield reactor
    stop_reactor_threads(reactor)


IN_CI = os.environ.get("CI", "").lower() == "true"


def need_tool(name: str) -> str:
    """The path of an external tool; a test whose tool is missing skips, but fails in CI."""
    path = shutil.which(name)
    if path is None:
        missing_tool(f"{name} is not installed")
    assert path is not None
    return path


class DnsZone:
    """The records a loopback DNS server answers (read again on every query)."""

    def __init__(self, path: Path, port: int) -> None:
        self.path = path
        self.port = port
        self.records: dict[str, list[list[Any]]] = {}
        self.save()

    def set(self, name: str, *records: list[Any]) -> None:
        self.records[name.lower()] = [list(r) for r in records]
        self.save()

    def clear(self) -> None:
        self.records = {}
        self.save()

    def save(self) -> None:
        self.path.write_text(json.dumps(self.records))


@pytest.fixture(scope="session")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsZone]:
    """A DNS server (Twisted Names, its own process) on a free loopback port."""
    zone = DnsZone(tmp_path_factory.mktemp("dns") / "zone.json", free_port())
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.dns_server", str(zone.path), str(zone.port)],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    yield zone
    process.terminate()
    process.wait(10)


@pytest.fixture
def dns_zone(dns_server: DnsZone) -> DnsZone:
    """The session's DNS server, with no records at the start of the test."""
    dns_server.clear()
    return dns_server


VERIFIERS = Path(__file__).resolve().parent / "verifiers"


@pytest.fixture(scope="session")
def mail_dkim() -> str:
    perl = need_tool("perl")
    if subprocess.run([perl, "-MMail::DKIM::Verifier", "-e1"], capture_output=True).returncode:
        missing_tool("Perl's Mail::DKIM is not installed (Debian: libmail-dkim-perl)")
    return perl


@pytest.fixture(scope="session")
def mailtools() -> str:
    """perl, with MailTools (Mail::Header, Mail::Address) for tests/header_parsers.py."""
    perl = need_tool("perl")
    if subprocess.run([perl, "-MMail::Address", "-MMail::Header", "-e1"]).returncode:
        missing_tool("Perl's MailTools is not installed (Debian: libmailtools-perl)")
    return perl


@pytest.fixture(scope="session")
def mailauth() -> str:
    """node, with mailauth installed from tests/verifiers/package.json if it is not yet."""
    node = need_tool("node")
    if not (VERIFIERS / "node_modules" / "mailauth").is_dir():
        npm = need_tool("npm")
        result = subprocess.run(
            [npm, "install", "--prefix", VERIFIERS, "--no-package-lock", "--no-audit", "--no-fund"],
            capture_output=True,
            text=True,
            timeout=240,
        )
        if result.returncode:
            missing_tool(f"cannot install mailauth: {result.stderr[-2000:]}")
    return node


def missing_tool(message: str) -> None:
    """A tool that cannot run: the test skips locally, and fails in CI (.ci/run installs it)."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpServer]:
    """The loopback test SMTP server (tests/smtp_server.py)."""
    async with SmtpServer() as server:
        yield server


@pytest.fixture
async def gateway(
    tmp_path: Path, redis_url: str, redis: Redis, smtp: SmtpServer, clock: FixedClock
) -> AsyncIterator[Gateway]:
    """A gateway relaying to `smtp`, with the example French account."""
    gateway = Gateway(load_config(write_config(tmp_path, redis_url, smtp.port)), redis, clock)
    yield gateway
    await gateway.close()
