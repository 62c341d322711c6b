"""The Lua source of the gateway's Redis scripts, shipped as package data beside this module."""

from __future__ import annotations

from importlib.resources import files


def lua_source(name: str, package: str = __name__) -> str:
    """The text of `<name>.lua` in this folder, or in the folder of `package` (another
    part's own scripts)."""
    return files(package).joinpath(f"{name}.lua").read_text(encoding="utf-8")
