"""What the render pool's processes run: one part of an account's templates, or its SMS text."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Template

from gateway.sandbox import TEXT_ENVIRONMENT
from outbound.rendering import Renderer, bounded

# This process's Renderer, and the templates it was made for: the folder, and the daemon's
# generation of them (a reload makes a new one, so that the files are read again).
_current: tuple[tuple[Path | None, int], Renderer] | None = None


def render_part(
    templates_dir: Path | None,
    generation: int,
    prefix: str,
    kind: str,
    part: str,
    values: Mapping[str, Any],
    max_output: int,
) -> str | None:
    """`Renderer.part` in this process, its output stopped past `max_output` bytes."""
    global _current
    if _current is None or _current[0] != (templates_dir, generation):
        _current = ((templates_dir, generation), Renderer(templates_dir))
    return _current[1].part(prefix, kind, part, values, max_output)


@lru_cache(maxsize=1024)
def _text_template(source: str) -> Template:
    return TEXT_ENVIRONMENT.from_string(source)


def render_text(source: str, variables: Mapping[str, Any], max_output: int) -> str:
    """An account's own SMS text; Jinja's errors as they come, OutputOverLimit past the limit."""
    return bounded(_text_template(source).generate(variables), max_output)
