"""The `file` SMS provider: each text becomes one JSON line in a file, for trials and demos."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from typing import Literal

from gateway.settings import SmsFileOptions
from gateway.sms_provider import (
    Accepted,
    CallbackRefused,
    DeliveryReceipt,
    IncomingText,
    ProviderContext,
    ProviderError,
    ProviderPlugin,
    TextMessage,
    WebhookAnswer,
    WebhookRequest,
)


class FileProvider:
    """Appends to `path`; nothing leaves the machine, so no report ever comes back."""

    def __init__(self, options: SmsFileOptions, context: ProviderContext) -> None:
        self.path = options.path

    async def send(self, message: TextMessage) -> Accepted:
        provider_id = uuid.uuid4().hex
        line = json.dumps(
            {
                "id": provider_id,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "to": message.to,
                "text": message.text,
                "encoding": message.encoding,
                "parts": message.parts,
                "reference": message.reference,
            },
            ensure_ascii=False,
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One write of one line with O_APPEND: lines of concurrent workers never interleave.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise ProviderError(
                "", f"cannot append to {self.path}: {exc.strerror}", temporary=True
            ) from exc
        return Accepted(provider_id)

    def receipt(self, request: WebhookRequest) -> DeliveryReceipt:
        raise CallbackRefused("the file provider takes no callbacks")

    def incoming(self, request: WebhookRequest) -> IncomingText:
        raise CallbackRefused("the file provider takes no callbacks")

    def acknowledgement(self, path: Literal["status", "incoming"]) -> WebhookAnswer:
        return WebhookAnswer()

    async def close(self) -> None:
        return None


PLUGIN = ProviderPlugin(options=SmsFileOptions, create=FileProvider)
