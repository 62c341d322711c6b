"""The queue through Sentinel and Cluster URLs, against real servers started here."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis as SyncRedis

from gateway.embedded_redis import executable
from gateway.jobs import parse_job
from gateway.queue import JobQueue, QueueOptions
from gateway.redis_conn import connect
from tests.conftest import FixedClock, RedisServer
from tests.redis_server import free_port
from tests.test_queue import booked


def wait_until(check: object, what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def sentinel_port(redis_server: RedisServer, tmp_path: Path) -> Iterator[int]:
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor mailgw 127.0.0.1 {redis_server.port} 1\n"
    )
    process = subprocess.Popen([executable(), str(conf), "--sentinel"], stdout=subprocess.DEVNULL)
    client = SyncRedis(port=port, decode_responses=True)
    wait_until(lambda: client.sentinel_get_master_addr_by_name("mailgw"), "the sentinel")
    yield port
    client.close()
    process.terminate()
    process.wait(10)


def cluster_node_port() -> int:
    """A free port whose cluster bus port (the port + 10000) exists and is free too: an
    ephemeral port above 55535 has none, and the node would not start."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@pytest.fixture
def cluster_port(tmp_path: Path) -> Iterator[int]:
    """A one-node Redis Cluster holding every slot."""
    port = cluster_node_port()
    process = subprocess.Popen(
        [executable(), "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
         "--cluster-config-file", str(tmp_path / "nodes.conf"), "--dir", str(tmp_path),
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = SyncRedis(port=port, decode_responses=True)
    wait_until(client.ping, "the cluster node")
    client.execute_command("CLUSTER ADDSLOTS", *range(16384))
    wait_until(lambda: client.execute_command("CLUSTER INFO")["cluster_state"] == "ok", "cluster")
    yield port
    client.close()
    process.terminate()
    process.wait(10)


async def round_trip(url: str, prefix: str) -> None:
    redis = connect(url)
    queue = JobQueue(redis, QueueOptions(prefix=prefix), FixedClock())
    try:
        await queue.ensure_group()
        job = parse_job(json.dumps(booked()))
        assert (await queue.enqueue(job)).queued
        assert not (await queue.enqueue(job)).queued
        [delivery] = await queue.read("w1", 10, 100)
        assert (await queue.claim(job, delivery)).action == "run"
        await queue.complete(job, delivery, [])
        depths = await queue.depths()
        assert (depths.ready, depths.in_flight) == (0, 0)
        assert await queue.cancel_appointment("appt-1") == []
    finally:
        await redis.aclose()


async def test_queue_through_sentinel(redis_url: str, sentinel_port: int) -> None:
    await round_trip(f"redis+sentinel://127.0.0.1:{sentinel_port}/mailgw/0", "mailgw:")


async def test_queue_through_cluster(cluster_port: int) -> None:
    await round_trip(f"redis+cluster://127.0.0.1:{cluster_port}", "{mailgw}:")
