"""Redis out of reach: which errors are an outage, told once, waited out, against a real
Redis server stopped and started on its port."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    DataError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.outage import Outage, backoff, is_outage, lost_group
from gateway.redis_conn import connect
from tests.fault_harness import RedisProcess


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (ConnectionError("Connection closed by server."), True),
        (RedisTimeoutError("Timeout reading from socket"), True),
        (BusyLoadingError("Redis is loading the dataset in memory"), True),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (ResponseError("MASTERDOWN Link with MASTER is down"), True),
        (ResponseError("READONLY You can't write against a read only replica."), True),
        (ResponseError("TRYAGAIN Multiple keys request during rehashing of slot"), True),
        (ResponseError("CLUSTERDOWN The cluster is down"), True),
        (ResponseError("NOGROUP No such key 'mailgw:jobs' or consumer group"), False),
        (ResponseError("ERR Error running script: attempt to index a nil value"), False),
        (DataError("Invalid input of type: 'NoneType'"), False),
        (TimeoutError(), False),  # the gateway's own deadline, not Redis's
        (ValueError("x"), False),
    ],
)
def test_what_an_outage_is(error: Exception, outage: bool) -> None:
    assert is_outage(error) is outage
    assert lost_group(error) is str(error).startswith("NOGROUP")


def test_backoff_doubles_from_a_quarter_second_up_to_ten() -> None:
    assert [backoff(n, lambda: 0.0) for n in (1, 2, 3, 6, 7, 50)] == [
        0.25, 0.5, 1.0, 8.0, 10.0, 10.0,
    ]  # fmt: skip
    assert backoff(1, lambda: 0.99) < 0.25


async def test_steps_wait_redis_out_and_it_is_told_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisProcess(tmp_path / "redis")
    server.start()
    redis = connect(server.url)
    outage = Outage()
    try:
        await redis.set("k", "before")
        server.kill()
        caplog.set_level(logging.DEBUG, "gateway.outage")
        writes = [
            asyncio.create_task(outage.retried("part", lambda n=n: redis.set(f"k{n}", n)))
            for n in range(5)
        ]
        await asyncio.sleep(1.0)
        assert outage.since is not None and outage.status().startswith("Redis out of reach")
        assert not any(w.done() for w in writes)
        server.start()
        assert await asyncio.wait_for(asyncio.gather(*writes), 30) == [True] * 5
        assert await redis.mget("k", *(f"k{n}" for n in range(5))) == [
            "before", "0", "1", "2", "3", "4",
        ]  # fmt: skip
        told = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(told) == 2, told
        assert told[0].startswith("Redis is out of reach (ConnectionError")
        assert told[1].startswith("Redis is back after ")
        assert outage.since is None and outage.status() == ""

        server.kill()
        loop = asyncio.get_running_loop()
        with pytest.raises(ConnectionError):
            await outage.retried("part", lambda: redis.get("k"), deadline=loop.time() + 0.5)
    finally:
        await redis.aclose()
        server.close()


async def test_errors_that_are_not_an_outage_are_raised_at_once() -> None:
    calls = 0

    async def wrong() -> None:
        nonlocal calls
        calls += 1
        raise ResponseError("ERR wrong number of arguments")

    with pytest.raises(ResponseError):
        await Outage().retried("part", wrong)
    assert calls == 1
