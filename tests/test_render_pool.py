"""The render pool with its real processes: limits in time and memory, a process killed and
replaced, one task at a time per key, and an event loop that never waits for a task."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest

from outbound.render_pool import OverLimit, RenderPool, TaskLimits

# Wall-clock limits far above the CPU time the tasks take: the machine may be busy.
LIMITS = TaskLimits(seconds=10.0, memory=64_000_000)


def pid() -> int:
    return os.getpid()


async def processes(pool: RenderPool) -> set[int]:
    """The pool's two processes, each busy long enough for the other to take a task."""
    return set(await asyncio.gather(*(pool.run(spin, (0.3,), LIMITS) for _ in range(2))))


def spin(seconds: float) -> int:
    """Busy for `seconds` of CPU; returns the process id."""
    deadline = time.process_time() + seconds
    while time.process_time() < deadline:
        pass
    return os.getpid()


def allocate(size: int) -> int:
    return len(bytearray(size))


def fail() -> None:
    raise ValueError("as asked")


@pytest.fixture
async def pool() -> AsyncIterator[RenderPool]:
    made = RenderPool(2, (__name__,))
    yield made
    await made.close()


async def test_a_task_over_its_time_is_killed_and_its_process_replaced(pool: RenderPool) -> None:
    before = await processes(pool)
    started = time.monotonic()
    with pytest.raises(OverLimit) as raised:
        await pool.run(spin, (30.0,), TaskLimits(0.5, 64_000_000))
    assert raised.value.problem == "render time over 0.5 s"
    assert time.monotonic() - started < 5.0
    # The pool goes on, with a new process in place of the killed one.
    after = await processes(pool)
    assert len(before & after) == 1


async def test_memory_beyond_the_limit_fails_the_task_not_its_process(pool: RenderPool) -> None:
    assert await pool.run(allocate, (10_000_000,), LIMITS) == 10_000_000
    with pytest.raises(OverLimit) as raised:
        await pool.run(allocate, (500_000_000,), LIMITS)
    assert raised.value.problem == "memory over 64 MB"
    assert await pool.run(allocate, (10_000_000,), LIMITS) == 10_000_000


async def test_the_task_s_own_errors_come_back_as_they_are(pool: RenderPool) -> None:
    with pytest.raises(ValueError, match="as asked"):
        await pool.run(fail, (), LIMITS)


async def test_the_loop_never_waits_for_a_task(pool: RenderPool) -> None:
    await pool.run(pid, (), LIMITS)  # the processes started
    gaps: list[float] = []

    async def heartbeat() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    beating = asyncio.create_task(heartbeat())
    with pytest.raises(OverLimit):
        await pool.run(spin, (30.0,), TaskLimits(2.0, 64_000_000))
    beating.cancel()
    # A loop waiting for the task would have missed a beat of 2 s.
    assert len(gaps) > 50
    assert max(gaps) < 0.5


async def test_one_key_holds_one_process_while_the_others_go_on(pool: RenderPool) -> None:
    await pool.run(pid, (), LIMITS)
    finished: dict[str, float] = {}
    started = time.monotonic()

    async def task(key: str, name: str, seconds: float) -> None:
        async with pool.turn(key):
            await pool.run(spin, (seconds,), LIMITS)
        finished[name] = time.monotonic() - started

    await asyncio.gather(
        task("a", "a1", 0.6), task("a", "a2", 0.6), task("a", "a3", 0.6), task("b", "b1", 0.1)
    )
    # a's tasks ran one after the other (1.8 s of CPU), and b's did not wait behind them.
    assert finished["b1"] < finished["a1"] < finished["a2"] < finished["a3"]
    assert finished["a3"] > 1.8
    assert pool._turns == {}


async def test_a_cancelled_wait_kills_its_task(pool: RenderPool) -> None:
    await pool.run(pid, (), LIMITS)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(pool.run(spin, (30.0,), TaskLimits(30.0, 64_000_000)), 0.5)
    # Both processes are free again at once: the cancelled task's one was replaced.
    started = time.monotonic()
    await asyncio.gather(*(pool.run(spin, (0.2,), LIMITS) for _ in range(2)))
    assert time.monotonic() - started < 5.0
