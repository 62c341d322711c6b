"""[accounts]: where account files are and how long they are cached."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field

from gateway.durations import PositiveDuration
from gateway.settings.files import ConfigPath
from gateway.settings.restart import RestartOnly
from gateway.settings.types import MODEL_CONFIG


class AccountsSettings(BaseModel):
    """Where account files are and how long they are cached."""

    model_config = MODEL_CONFIG

    directory: ConfigPath = Field(
        Path("accounts"),
        validate_default=True,
        description="Account files, one <account id>.toml each; default: next to this file.",
    )
    cache_size: Annotated[int, RestartOnly] = Field(
        10_000, gt=0, description="Accounts kept in each process's memory."
    )
    cache_ttl: Annotated[PositiveDuration, RestartOnly] = Field(
        timedelta(seconds=60), description="How long a cached account is used before it is re-read."
    )
