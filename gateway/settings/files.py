"""Paths written in the main file: made absolute, checked readable, secrets read."""

from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, ValidationInfo

from gateway.validation_errors import custom_error


def default_state_dir() -> Path:
    """$STATE_DIRECTORY (set by systemd's StateDirectory=), else ~/.local/state/mailgw."""
    # systemd lists several directories separated by colons when several are configured
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state) if state else Path("~/.local/state/mailgw").expanduser()


def _to_path(value: Any) -> Any:
    if isinstance(value, str):
        if not value:
            raise custom_error("path_empty", "must not be empty")
        return Path(value)
    if isinstance(value, PurePath):
        return Path(value)
    raise custom_error("path_type", "must be a path (a string)")


def _absolute(value: Path, info: ValidationInfo) -> Path:
    value = value.expanduser()
    if value.is_absolute():
        return value
    # relative to the config file's folder; without a file (embedded defaults), to the cwd
    base = (info.context or {}).get("base_dir")
    return Path(base if base is not None else Path.cwd(), value)


def _readable(value: Path) -> Path:
    if not value.is_file():
        raise custom_error("file_missing", f"file not found: {value}")
    if not os.access(value, os.R_OK):
        raise custom_error("file_unreadable", f"file is not readable by this user: {value}")
    return value


SECRET_MIN_BYTES = 32


def read_secret(path: Path) -> bytes:
    """A secret file's bytes, without the trailing line break an editor adds."""
    return path.read_bytes().rstrip(b"\r\n")


def _long_enough_secret(value: Path) -> Path:
    if len(read_secret(value)) < SECRET_MIN_BYTES:
        raise custom_error(
            "secret_short",
            f"{value} must hold at least {SECRET_MIN_BYTES} bytes of secret "
            "(for example: head -c 48 /dev/urandom | base64 > FILE)",
        )
    return value


_path_str = PlainSerializer(str, return_type=str)
ConfigPath = Annotated[Path, BeforeValidator(_to_path), AfterValidator(_absolute), _path_str]
"""A path; relative ones are relative to the configuration file's folder, ~ is expanded."""
ReadableFile = Annotated[ConfigPath, AfterValidator(_readable)]
"""A ConfigPath that must name an existing, readable file."""
SecretFile = Annotated[ReadableFile, AfterValidator(_long_enough_secret)]
"""A ReadableFile holding at least 32 bytes of secret."""
