"""Timing one call robustly on a shared, noisy machine (the benchmarks' helper)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def ms_per_call(
    call: Callable[[], object],
    seconds: float,
    rounds: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Time of one call: the median of `rounds` means, over about `seconds` in all (the
    median, as other processes on the machine make single rounds noisy). `clock`:
    time.process_time for CPU time, what `openssl speed` reports."""
    for _ in range(5):
        call()
    means = []
    for _ in range(rounds):
        count, started, started_clock = 0, time.perf_counter(), clock()
        while count < 10 or time.perf_counter() - started < seconds / rounds:
            call()
            count += 1
        means.append((clock() - started_clock) / count * 1000)
    return statistics.median(means)


def finished(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never waits, run without a loop: how the default
    templates render (only an account's own templates wait, for the render pool), so that
    what is timed is the work and not a loop's round."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise RuntimeError("the coroutine waited: it needs an event loop")
