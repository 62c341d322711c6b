"""Timing one call robustly on a shared, noisy machine (the benchmarks' helper)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def ms_per_call(call: Callable[[], object], seconds: float, rounds: int = 5) -> float:
    """Time of one call: the median of `rounds` means, over about `seconds` in all (the
    median, as other processes on the machine make single rounds noisy)."""
    for _ in range(5):
        call()
    means = []
    for _ in range(rounds):
        count, started = 0, time.perf_counter()
        while count < 10 or time.perf_counter() - started < seconds / rounds:
            call()
            count += 1
        means.append((time.perf_counter() - started) / count * 1000)
    return statistics.median(means)
