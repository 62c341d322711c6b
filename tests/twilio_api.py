"""A loopback stand-in for Twilio's Messages API (Twisted web), for tests and benchmarks."""

# Usable wherever Twisted's asyncio reactor runs on the current loop (gateway.reactor):
#     async with TwilioApi(ACCOUNT_SID, AUTH_TOKEN) as api:
#         base_url = api.url; then api.requests, api.fail_next(429, 20429, "Too Many Requests",
#         {"Retry-After": "3"})

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from types import TracebackType
from typing import Any

from twisted.internet import defer
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

E164 = re.compile(r"\+[1-9][0-9]{1,14}")
MESSAGING_SERVICE = re.compile(r"MG[0-9a-fA-F]{32}")
MAX_BODY = 1600


@dataclass(frozen=True)
class TwilioRequest:
    """One message the stand-in accepted: its form fields, credentials and the sid answered."""

    form: dict[str, str]
    user: str
    password: str
    content_type: str
    sid: str


@dataclass(frozen=True)
class Scripted:
    """An error answered instead of the next request's normal answer."""

    status: int
    code: int | None
    message: str
    headers: dict[str, str] = field(default_factory=dict)


def error_body(status: int, code: int | None, message: str) -> bytes:
    """Twilio's error document."""
    more_info = f"https://www.twilio.com/docs/errors/{code}" if code else None
    return json.dumps(
        {"code": code, "message": message, "more_info": more_info, "status": status}
    ).encode()


def segments(body: str) -> int:
    """Parts a text is sent in (ASCII standing in for GSM-7, a stand-in's approximation)."""
    if body.isascii():
        return 1 if len(body) <= 160 else -(-len(body) // 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


class TwilioApi:
    """Answers POST /2010-04-01/Accounts/<sid>/Messages.json as Twilio documents it: basic
    auth, form fields checked, 201 with the message's JSON; records what it accepts."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.requests: list[TwilioRequest] = []
        self.scripted: deque[Scripted] = deque()
        self.url = ""
        self._port: Any = None
        self._site = Site(_Messages(self))

    async def start(self) -> TwilioApi:
        from twisted.internet import reactor  # the running (asyncio) reactor, once installed

        # port 0: the system picks a free port, with no window for another listener to take it
        self._port = reactor.listenTCP(0, self._site, interface="127.0.0.1")
        self.url = f"http://127.0.0.1:{self._port.getHost().port}"
        return self

    async def stop(self) -> None:
        """Stop listening; connections still open end when their clients close them."""
        stopped = defer.maybeDeferred(self._port.stopListening)
        await stopped.asFuture(asyncio.get_running_loop())

    async def __aenter__(self) -> TwilioApi:
        return await self.start()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def fail_next(
        self,
        status: int,
        code: int | None,
        message: str,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests with this error, whatever they hold."""
        self.scripted.extend([Scripted(status, code, message, headers or {})] * times)

    def answer(self, request: Request) -> tuple[int, bytes, dict[str, str]]:
        """Status, JSON body and headers for one request."""
        if self.scripted:
            failure = self.scripted.popleft()
            return (
                failure.status,
                error_body(failure.status, failure.code, failure.message),
                failure.headers,
            )
        path = request.path.decode()
        if path != f"/2010-04-01/Accounts/{self.account_sid}/Messages.json":
            return _error(404, 20404, f"The requested resource {path} was not found")
        user, password = request.getUser().decode(), request.getPassword().decode()
        if (user, password) != (self.account_sid, self.auth_token):
            return _error(401, 20003, "Authenticate")
        form = {key.decode(): values[0].decode() for key, values in (request.args or {}).items()}
        refusal = self._refusal(form)
        if refusal is not None:
            return refusal
        sid = "SM" + uuid.uuid4().hex
        self.requests.append(
            TwilioRequest(
                form=form,
                user=user,
                password=password,
                content_type=(request.getHeader("content-type") or ""),
                sid=sid,
            )
        )
        return 201, json.dumps(self._message(sid, form)).encode(), {}

    def _refusal(self, form: dict[str, str]) -> tuple[int, bytes, dict[str, str]] | None:
        to, body = form.get("To", ""), form.get("Body", "")
        service = form.get("MessagingServiceSid")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not E164.fullmatch(to):
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not form.get("From") and not service:
            return _error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
        if service is not None and not MESSAGING_SERVICE.fullmatch(service):
            return _error(400, 21705, "The Messaging Service is invalid")
        if not body:
            return _error(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY:
            return _error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        return None

    def _message(self, sid: str, form: dict[str, str]) -> dict[str, Any]:
        now = format_datetime(datetime.now(UTC))
        service = form.get("MessagingServiceSid")
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": form["Body"],
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": service,
            "num_media": "0",
            # documented: 0 until a Messaging Service has picked the sender
            "num_segments": "0" if service else str(segments(form["Body"])),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service and not form.get("From") else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": form["To"],
            "uri": f"{uri}.json",
        }


def _error(status: int, code: int, message: str) -> tuple[int, bytes, dict[str, str]]:
    return status, error_body(status, code, message), {}


class _Messages(Resource):
    isLeaf = True

    def __init__(self, api: TwilioApi) -> None:
        super().__init__()
        self.api = api

    def render(self, request: Request) -> bytes:
        if request.method != b"POST":
            status, body, headers = _error(405, 20004, "Method not allowed")
        else:
            status, body, headers = self.api.answer(request)
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        for name, value in headers.items():
            request.setHeader(name.encode(), value.encode())
        return body
