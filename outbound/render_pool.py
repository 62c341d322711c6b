"""Child processes for owners' templates: each task bounded in time, memory and CPU, awaited."""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import resource
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pebble import ProcessExpired, ProcessPool

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TaskLimits:
    """What one task may take: `seconds` of wall-clock time, after which its process is killed
    and replaced, and `memory` bytes beyond what its process held when it began."""

    seconds: float
    memory: int


class OverLimit(Exception):
    """A task stopped for going over one of its limits; `problem` says which, in words."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


def megabytes(size: int) -> str:
    """`256 MB`: how the limits are written in reasons."""
    return f"{size / 1_000_000:g} MB"


class RenderPool:
    """A few processes, started by multiprocessing's forkserver (never forked from the daemon,
    whose threads a fork would copy in the middle of their work), that run one task each at
    a time under TaskLimits. `turn(key)` lets one key (an account) run one task at a time, so
    that it holds at most one process and the others stay for everyone else."""

    def __init__(self, processes: int, preload: Sequence[str] = ()) -> None:
        context = multiprocessing.get_context("forkserver")
        # Imported once by the fork server, so that a process replacing a killed one starts
        # with them loaded (and without the daemon's own main module).
        context.set_forkserver_preload(list(preload))
        self._pool = ProcessPool(max_workers=processes, initializer=_no_core_dumps, context=context)
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}
        # The processes start with the first task: a daemon whose accounts have no templates
        # of their own never starts them.
        self._started = False

    @contextlib.asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        """Wait until no other task of `key` is in the pool, and hold that place meanwhile."""
        lock, users = self._turns.get(key) or (asyncio.Lock(), 0)
        self._turns[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._turns[key]
            if users == 1:
                del self._turns[key]
            else:
                self._turns[key] = (lock, users - 1)

    async def run(self, function: Callable[..., T], args: Sequence[Any], limits: TaskLimits) -> T:
        """`function(*args)` in one of the processes; OverLimit past a limit. Cancelling the
        wait kills the process that runs the task (pebble replaces it)."""
        if not self._started:
            # Off the loop: the fork server's first start takes a while.
            await asyncio.to_thread(self._start)
            self._started = True
        future = self._pool.schedule(
            _limited, args=(limits, function, *args), timeout=limits.seconds
        )
        try:
            result: T = await asyncio.wrap_future(future)
        except TimeoutError:
            raise OverLimit(f"render time over {limits.seconds:g} s") from None
        except MemoryError:
            raise OverLimit(f"memory over {megabytes(limits.memory)}") from None
        except ProcessExpired as exc:
            if exc.exitcode == -signal.SIGXCPU:
                raise OverLimit(f"CPU time over {_cpu_seconds(limits):g} s") from None
            raise OverLimit(f"its process ended (exit status {exc.exitcode})") from None
        return result

    def _start(self) -> None:
        # pebble starts its pool when asked whether it is active.
        if not self._pool.active:
            raise RuntimeError("the render pool did not start")

    async def close(self) -> None:
        """Stop the processes, their tasks with them; the wait runs off the loop."""
        self._pool.stop()  # type: ignore[no-untyped-call]  # pebble leaves it unannotated
        await asyncio.to_thread(self._pool.join)


def _no_core_dumps() -> None:
    """A process killed for its CPU time writes no core file of its memory."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _cpu_seconds(limits: TaskLimits) -> int:
    # Above the wall-clock limit, which comes first unless no one is left to apply it (the
    # daemon gone): then the kernel ends the process.
    return math.ceil(limits.seconds) + 1


def _limited(limits: TaskLimits, function: Callable[..., T], *args: Any) -> T:
    """In the pool's process: the limits set for this task, then the task."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = math.ceil(usage.ru_utime + usage.ru_stime)
    try:
        _lower(resource.RLIMIT_AS, _address_space() + limits.memory)
        _lower(resource.RLIMIT_CPU, used + _cpu_seconds(limits))
    except OSError as exc:
        # Never run an owner's template without its limits.
        raise RuntimeError(
            f"the render processes may not set their limits ({exc.strerror}): a systemd"
            " unit must allow them with SystemCallFilter=setrlimit prlimit64"
        ) from None
    return function(*args)


def _lower(limit: int, soft: int) -> None:
    """Set the soft limit, never above the hard one (which only root could raise)."""
    _, hard = resource.getrlimit(limit)
    resource.setrlimit(limit, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def _address_space() -> int:
    """Bytes of address space this process has mapped now (VmSize)."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")
