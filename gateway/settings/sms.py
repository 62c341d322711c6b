"""[sms]: which provider sends text messages, its webhook, and each provider's table."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.durations import PositiveDuration
from gateway.settings.files import ConfigPath, default_state_dir
from gateway.settings.types import MODEL_CONFIG, Endpoint, ListenAddress


class SmsFileOptions(BaseModel):
    """Options of the built-in `file` provider."""

    model_config = MODEL_CONFIG

    path: ConfigPath = Field(
        default_factory=lambda: default_state_dir() / "sms-outbox.jsonl",
        description="JSON-lines file appended to (default: <state_dir>/sms-outbox.jsonl).",
    )


class SmsSettings(BaseModel):
    """Which provider sends text messages, and each provider's options as [sms.<provider>]."""

    # each provider's own table is kept as written: its plugin validates it
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    __pydantic_extra__: dict[str, dict[str, Any]] = Field(init=False)

    provider: str = Field(
        "file",
        pattern=r"^[a-z][a-z0-9_]*$",
        description="file, twilio, kannel, smpp, or a plugin (entry points mailgw.sms_providers).",
    )
    webhook_listen: ListenAddress = Field(
        Endpoint("127.0.0.1", 8026),
        description='Where providers post delivery reports and incoming texts, "host:port".',
    )
    webhook_url: str = Field(
        "http://127.0.0.1:8026",
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description=(
            "Base URL at which the provider reaches webhook_listen (through a proxy if any):"
            " callbacks go to <webhook_url>/sms/<provider>/status and .../incoming. Twilio"
            " signs the URL it calls, so it must be exactly what the provider is given."
        ),
    )
    answer_interval: PositiveDuration = Field(
        timedelta(hours=24),
        description=(
            "A number that writes anything but STOP or START gets one automatic answer per"
            " interval, saying the number is not read (never more: two robots could loop)."
        ),
    )
    file: SmsFileOptions = Field(default_factory=SmsFileOptions)

    def options(self, provider: str) -> Mapping[str, Any]:
        """The [sms.<provider>] table as written (empty if absent)."""
        if provider == "file":
            return self.file.model_dump()
        return (self.__pydantic_extra__ or {}).get(provider, {})
