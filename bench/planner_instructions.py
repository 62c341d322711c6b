"""Instructions per plan, counted by valgrind's callgrind: in the planning process and in its
Redis, beside Redis alone taking the same writes (the reference of bench/planner.py).

    python bench/planner_instructions.py [--appointments 3000] [--concurrency 200]

Times on these shared machines move by a factor of two within an hour; instruction counts
do not: the same code gives the same counts to within about 1%, so they tell whether a
change made planning cheaper, and where (the process, or Redis). They leave out what
counts cannot show, cache misses and page faults, which weigh on Redis once it holds
millions of keys: bench/planner.py measures times, at any size. The appointments are those
of bench/planner.py; a first 500 are planned before counting starts, so that caches and
Redis's script cache are warm. Needs valgrind (Debian: valgrind); runs its own planning
process and both Redis servers under callgrind, switched on only while they plan.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

from redis import Redis  # noqa: E402

from bench.planner import NOW, Reference, plan, planner_on, prepared  # noqa: E402
from gateway.embedded_redis import executable  # noqa: E402
from gateway.keys import Keys  # noqa: E402
from gateway.redis_conn import connect  # noqa: E402
from tests.conftest import FixedClock  # noqa: E402
from tests.redis_server import free_port  # noqa: E402

WARM_UP = 500


def callgrind(out: Path, command: list[str]) -> list[str]:
    """`command` under callgrind, counting nothing until told to (callgrind_control -i on)."""
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
            *command]  # fmt: skip


def counting(pid: int, on: bool) -> None:
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(pid)],
                   check=True, capture_output=True)  # fmt: skip


def instructions(out: Path) -> int:
    """The instructions a finished callgrind run counted."""
    for line in reversed(out.read_text().splitlines()):
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise ValueError(f"{out}: no totals")


@contextmanager
def counted_redis(directory: Path) -> Iterator[tuple[int, int, Path]]:
    """A Redis server under callgrind: its port, its pid, and its counts' file (complete
    once it has stopped)."""
    port, out = free_port(), directory / "redis.callgrind"
    server = subprocess.Popen(
        callgrind(out, [executable(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no", "--dir", str(directory)]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = Redis(port=port)
    try:
        for _ in range(600):
            try:
                client.ping()
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError("redis-server under valgrind did not start") from None
                time.sleep(0.1)
        yield port, server.pid, out
    finally:
        client.close()
        server.terminate()
        server.wait()


async def count(ports: list[int], pids: list[int], appointments: int, concurrency: int) -> None:
    """In the process under callgrind: plan, counting this process and the planner's Redis;
    then the reference's writes, counting its Redis."""
    redis = connect(f"redis://127.0.0.1:{ports[0]}/0", max_connections=concurrency + 8)
    planner, _ = await planner_on(redis, FixedClock(NOW.timestamp()))
    await plan(planner, prepared(WARM_UP, first=appointments), concurrency)
    jobs = prepared(appointments)
    for pid in (os.getpid(), pids[0]):
        counting(pid, True)
    await plan(planner, jobs, concurrency)
    for pid in (os.getpid(), pids[0]):
        counting(pid, False)
    await redis.aclose()
    reference = Reference(ports[1], Keys())
    await reference.send([command for job in prepared(WARM_UP, first=appointments)
                          for command in reference.planning(*job)])  # fmt: skip
    commands = [command for job in jobs for command in reference.planning(*job)]
    counting(pids[1], True)
    await reference.send(commands)
    counting(pids[1], False)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--appointments", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--count", help=argparse.SUPPRESS)  # PORT,PID,PORT,PID: the child
    args = parser.parse_args()
    if args.count:
        numbers = [int(n) for n in args.count.split(",")]
        asyncio.run(count(numbers[0::2], numbers[1::2], args.appointments, args.concurrency))
        return
    with tempfile.TemporaryDirectory() as scratch:
        directories = [Path(scratch) / name for name in ("redis", "reference")]
        own = Path(scratch) / "planner.callgrind"
        with ExitStack() as running:
            servers = []
            for directory in directories:
                directory.mkdir()
                servers.append(running.enter_context(counted_redis(directory)))
            ports_pids = ",".join(f"{port},{pid}" for port, pid, _ in servers)
            subprocess.run(
                callgrind(own, [sys.executable, __file__, "--count", ports_pids,
                                "--appointments", str(args.appointments),
                                "--concurrency", str(args.concurrency)]),
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        # The servers have stopped: callgrind has written their counts.
        planning, redis, reference = (
            instructions(out) / args.appointments for out in (own, *(s[2] for s in servers))
        )
    print(f"{args.appointments:,} appointments planned, instructions per plan (callgrind):")
    print(f"  planning process   {planning:>9,.0f}")
    print(f"  its Redis          {redis:>9,.0f}   {redis / reference:.2f}x the reference")
    print(f"  reference: Redis alone taking the same writes {reference:>9,.0f}")


if __name__ == "__main__":
    main()
