"""[bounces]: the mail administrator's own bounce classification rules."""

from __future__ import annotations

from pydantic import BaseModel, Field

from gateway.settings.files import ConfigPath
from gateway.settings.types import MODEL_CONFIG


class BouncesSettings(BaseModel):
    """How negative outcomes are classified (docs/bounces.md)."""

    model_config = MODEL_CONFIG

    rules_file: ConfigPath | None = Field(
        None,
        description=(
            "A TOML file of [[rules]] tried before the shipped ones (docs/bounces.md), "
            'e.g. "/etc/mailgw/bounce-rules.toml". Default: none, the shipped rules only.'
        ),
    )
