"""How many CPUs this process may use: those it may run on, no more than its cgroups' CPU
quota allows (systemd's CPUQuota=, a container's CPU limit)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cpus() -> int:
    """The CPUs this process may run on, capped by its CPU quota rounded up (1.5 CPUs: 2)."""
    cpus = len(os.sched_getaffinity(0))
    try:
        memberships = Path("/proc/self/cgroup").read_text()
    except OSError:  # not Linux, or no cgroups
        return cpus
    quota = cpu_quota(memberships)
    return cpus if quota is None else max(1, min(cpus, math.ceil(quota)))


def cpu_quota(memberships: str, root: Path = CGROUP_ROOT) -> float | None:
    """The smallest CPU quota, in CPUs, of the cgroups in `memberships` (the text of
    /proc/<pid>/cgroup) and of their ancestors, whose file systems are under `root`; None
    when none is set. A quota set on a parent limits its children as much as their own."""
    quotas: list[float] = []
    for line in memberships.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and not controllers:
            quotas += _along(root, path, _unified_quota)
        elif "cpu" in controllers.split(","):
            # cgroup v1: the hierarchy is mounted under the names of its controllers
            quotas += _along(root / controllers, path, _cpu_controller_quota)
    return min(quotas, default=None)


def _along(base: Path, path: str, quota: Callable[[Path], float | None]) -> Iterator[float]:
    """The quotas set on the cgroup at `path` and on each of its ancestors."""
    group = PurePosixPath(path)
    for each in (group, *group.parents):
        found = quota(base / each.relative_to("/"))
        if found is not None:
            yield found


def _unified_quota(group: Path) -> float | None:
    # cgroup v2: "max 100000" (no limit) or "<quota> <period>", in microseconds
    text = _read(group / "cpu.max")
    if text is None or text.startswith("max"):
        return None
    quota, period = text.split()
    return int(quota) / int(period)


def _cpu_controller_quota(group: Path) -> float | None:
    # cgroup v1: a quota of -1 is no limit
    quota, period = _read(group / "cpu.cfs_quota_us"), _read(group / "cpu.cfs_period_us")
    if quota is None or period is None or int(quota) < 0:
        return None
    return int(quota) / int(period)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:  # this cgroup has no such limit, or is not visible from here
        return None
