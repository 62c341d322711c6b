"""[log]: how much the daemon logs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from gateway.settings.types import MODEL_CONFIG


class LogSettings(BaseModel):
    """How much the daemon logs."""

    model_config = MODEL_CONFIG

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Least severe level written to the log: debug, info, warning, error."
    )
