"""`mailgw check-config`: every configuration file checked, each problem at FILE:KEY."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from gateway.commands.support import load_checked_config
from gateway.errors import ConfigError


def cmd_check_config(path: Path | None, out: TextIO) -> int:
    try:
        config = load_checked_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    # Checked here only: a template that cannot render fails its own jobs, and must not
    # stop the daemon from starting or reloading for every other account.
    from outbound.template_files import override_problems

    problems = override_problems(config.settings.templates.directory)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    where = config.path or "embedded defaults (no configuration file)"
    out.write(f"{where}: OK, {len(config.accounts)} account file(s)\n")
    return 0
