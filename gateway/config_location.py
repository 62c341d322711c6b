"""Which main configuration file to read: light, so that `mailgw` finds it before it
imports what reads it."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CONFIG_PATH = Path("/etc/mailgw/mailgw.toml")


def config_path(given: str | None = None) -> Path | None:
    """The main file to read: `given` (--config), else $MAILGW_CONFIG, else
    /etc/mailgw/mailgw.toml if it exists; None means the embedded defaults."""
    if given:
        return Path(given)
    if os.environ.get("MAILGW_CONFIG"):
        return Path(os.environ["MAILGW_CONFIG"])
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None
