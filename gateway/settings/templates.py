"""[templates]: the template overrides, and the limits of the accounts' own templates."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field

from gateway.durations import PositiveDuration
from gateway.settings.files import ConfigPath
from gateway.settings.restart import RestartOnly
from gateway.settings.types import MODEL_CONFIG


class TemplatesSettings(BaseModel):
    """Where the template overrides are, and the limits of those the accounts' owners write."""

    model_config = MODEL_CONFIG

    directory: ConfigPath = Field(
        Path("templates"),
        validate_default=True,
        description="Templates replacing the built-in ones; default: next to this file.",
    )
    render_time: PositiveDuration = Field(
        timedelta(seconds=2),
        description=(
            "Longest one file of an account's own templates (with what it includes), or its"
            " SMS text, may take to render; its process is then killed and replaced."
        ),
    )
    render_memory: int = Field(
        256_000_000,
        ge=16_000_000,
        description=(
            "Memory, in bytes, one render of an account's own template or SMS text may take"
            " beyond what its process holds."
        ),
    )
    max_output: int = Field(
        1_000_000,
        gt=0,
        description=(
            "Most bytes one file of an account's own templates, or its SMS text, may render."
        ),
    )
    # Restart-only: the render pool's processes are started once; the other limits apply at once.
    render_processes: Annotated[int, RestartOnly] = Field(
        2,
        gt=0,
        description=(
            "Processes that render the accounts' own templates and SMS texts; an account"
            " uses one at a time."
        ),
    )
