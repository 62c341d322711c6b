"""[reply_tokens]: the keys that sign the reply addresses given to clients."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field

from gateway.durations import PositiveDuration
from gateway.settings.files import SecretFile, read_secret
from gateway.settings.types import MODEL_CONFIG


class ReplyTokensSettings(BaseModel):
    """Keys that sign the reply addresses given to clients."""

    model_config = MODEL_CONFIG

    secret_files: tuple[SecretFile, ...] = Field(
        (),
        strict=False,
        description=(
            "Files of at least 32 random bytes each. The first signs new reply addresses; all "
            "of them verify, so a new key can be put first while old addresses keep working."
        ),
    )
    token_lifetime: PositiveDuration = Field(
        timedelta(days=180), description="How long a reply address keeps working."
    )

    def secrets(self) -> list[bytes]:
        """The keys, signing key first."""
        return [read_secret(path) for path in self.secret_files]
