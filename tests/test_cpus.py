"""How many CPUs "auto" counts: the affinity capped by the cgroups' CPU quota, read from
cgroup trees laid out as the kernel does, and from a real cgroup with a quota."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from gateway.cpus import CGROUP_ROOT, cpu_quota
from tests.conftest import missing_tool

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for line in text.splitlines():
        name, value = line.split("=")
        (path / name).write_text(value + "\n")


def test_unified_hierarchy_the_smallest_quota_of_the_group_and_its_parents(
    tmp_path: Path,
) -> None:
    write(tmp_path, "cgroup.controllers=cpu memory")  # the root: no cpu.max
    write(tmp_path / "system.slice", "cpu.max=max 100000")
    write(tmp_path / "system.slice" / "mailgw.service", "cpu.max=150000 100000")
    membership = "0::/system.slice/mailgw.service\n"
    assert cpu_quota(membership, tmp_path) == 1.5
    write(tmp_path / "system.slice", "cpu.max=50000 100000")
    assert cpu_quota(membership, tmp_path) == 0.5
    write(tmp_path / "system.slice", "cpu.max=max 100000")
    write(tmp_path / "system.slice" / "mailgw.service", "cpu.max=max 100000")
    assert cpu_quota(membership, tmp_path) is None


def test_cpu_controller_hierarchy_mounted_under_its_controllers_names(tmp_path: Path) -> None:
    write(tmp_path / "cpu,cpuacct", "cpu.cfs_quota_us=-1\ncpu.cfs_period_us=100000")
    group = tmp_path / "cpu,cpuacct" / "system.slice" / "mailgw.service"
    write(group, "cpu.cfs_quota_us=300000\ncpu.cfs_period_us=100000")
    membership = (
        "12:memory:/system.slice/mailgw.service\n"
        "4:cpu,cpuacct:/system.slice/mailgw.service\n"
        "1:name=systemd:/system.slice/mailgw.service\n"
        "0::/system.slice/mailgw.service\n"
    )
    assert cpu_quota(membership, tmp_path) == 3
    write(group, "cpu.cfs_quota_us=-1")
    assert cpu_quota(membership, tmp_path) is None


def test_no_cgroup_file_system_no_quota(tmp_path: Path) -> None:
    assert cpu_quota("0::/\n", tmp_path) is None
    assert cpu_quota("", tmp_path) is None


def process_count_in(directory: Path) -> int:
    """What "auto" counts in a process started in the cgroup at `directory`."""
    script = (
        "from gateway.settings import InboundSettings; print(InboundSettings().process_count())"
    )
    command = f'echo $$ > "{directory}/cgroup.procs" && exec "{sys.executable}" -c "{script}"'
    result = subprocess.run(
        ["sh", "-c", command], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return int(result.stdout)


def test_auto_counts_no_more_processes_than_a_real_cgroups_quota() -> None:
    cpus = len(os.sched_getaffinity(0))
    if cpus < 2:
        pytest.skip("one CPU: a quota of one cannot lower the count")
    memberships = Path("/proc/self/cgroup").read_text().splitlines()
    v1 = [line.split(":")[1] for line in memberships if "cpu" in line.split(":")[1].split(",")]
    base = CGROUP_ROOT / v1[0] if v1 else CGROUP_ROOT
    group = base / f"mailgw-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
        if v1:
            (group / "cpu.cfs_period_us").write_text("100000")
            (group / "cpu.cfs_quota_us").write_text("100000")
        else:
            (base / "cgroup.subtree_control").write_text("+cpu")
            (group / "cpu.max").write_text("100000 100000")
    except OSError as exc:
        if group.exists():
            group.rmdir()
        missing_tool(f"cannot make a cgroup with a CPU quota in {base}: {exc}")
    try:
        assert process_count_in(group) == 1
        if v1:
            (group / "cpu.cfs_quota_us").write_text("-1")
        else:
            (group / "cpu.max").write_text("max 100000")
        assert process_count_in(group) == cpus
    finally:
        group.rmdir()
