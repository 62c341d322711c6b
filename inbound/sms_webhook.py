"""The SMS webhook: providers post delivery reports and clients' texts here (Twisted web)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from gateway.sms_provider import (
    CallbackRefused,
    MalformedCallback,
    SmsProvider,
    WebhookAnswer,
    WebhookRequest,
)
from inbound.sms_inbox import SmsInbox

log = logging.getLogger(__name__)

# Providers' callbacks are a few form fields; anything much larger is not one.
MAX_BODY = 64 * 1024
PATHS: tuple[Literal["status", "incoming"], ...] = ("status", "incoming")


class SmsWebhook(Resource):
    """Answers /sms/<provider>/status and /sms/<provider>/incoming for the configured
    provider: 403 for a callback the provider did not sign, 400 for a malformed one,
    500 (the provider tries again) when it cannot be recorded."""

    isLeaf = True

    def __init__(
        self,
        name: str,
        provider: Callable[[], SmsProvider],
        public_url: Callable[[], str],
        inbox: SmsInbox,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.name = name
        self.provider = provider
        self.public_url = public_url
        self.inbox = inbox

    def render(self, request: Request) -> bytes | int:
        path = request.path.decode("latin-1")
        which = next((p for p in PATHS if path == f"/sms/{self.name}/{p}"), None)
        if which is None:
            return _reply(request, WebhookAnswer(404, body=b"not found\n"))
        if request.method not in (b"GET", b"POST"):
            return _reply(request, WebhookAnswer(405, body=b"GET or POST\n"))
        body = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        if len(body) > MAX_BODY:
            return _reply(request, WebhookAnswer(413, body=b"too large\n"))
        provider = self.provider()
        callback = self._callback(request, body)
        try:
            if which == "status":
                action: Coroutine[Any, Any, Any] = self.inbox.receipt(provider.receipt(callback))
            else:
                action = self.inbox.incoming(provider.incoming(callback))
        except CallbackRefused as exc:
            log.warning("refused SMS callback from %s: %s", request.getClientAddress(), exc)  # type: ignore[no-untyped-call]
            return _reply(request, WebhookAnswer(403, body=f"{exc}\n".encode()))
        except MalformedCallback as exc:
            return _reply(request, WebhookAnswer(400, body=f"{exc}\n".encode()))
        # A provider that hangs up early must not make finish() fail.
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        done = Deferred.fromFuture(asyncio.ensure_future(action))
        done.addCallbacks(
            lambda _: _finish(request, provider.acknowledgement(which), gone),
            lambda failure: self._failed(request, failure, gone),
        )
        return NOT_DONE_YET

    def _callback(self, request: Request, body: bytes) -> WebhookRequest:
        uri = request.uri.decode("latin-1")
        query = urlsplit(uri).query
        form = request.method == b"POST" and (
            (request.getHeader("content-type") or "").startswith(
                "application/x-www-form-urlencoded"
            )
        )
        fields = parse_qsl(
            body.decode("utf-8", "replace") if form else query, keep_blank_values=True
        )
        params: dict[str, str] = {}
        for key, value in fields:
            params.setdefault(key, value)
        headers = {
            name.decode("latin-1").lower(): values[0].decode("latin-1")
            for name, values in request.requestHeaders.getAllRawHeaders()
        }
        # As the provider called it: the public URL (a proxy may stand in between).
        url = self.public_url().rstrip("/") + uri
        return WebhookRequest(request.method.decode(), url, headers, params)

    def _failed(self, request: Request, failure: Any, gone: list[bool]) -> None:
        log.error("SMS callback not recorded: %s", failure.getErrorMessage())
        _finish(request, WebhookAnswer(500, body=b"not recorded, try again\n"), gone)


def _reply(request: Request, answer: WebhookAnswer) -> bytes:
    request.setResponseCode(answer.status)
    request.setHeader("content-type", answer.content_type)  # type: ignore[no-untyped-call]
    return answer.body


def _finish(request: Request, answer: WebhookAnswer, gone: list[bool]) -> None:
    if gone:
        return
    request.write(_reply(request, answer))  # type: ignore[no-untyped-call]
    request.finish()  # type: ignore[no-untyped-call]
