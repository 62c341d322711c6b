"""A loopback stand-in for Twilio's Messages API (Twisted web), for tests and benchmarks."""

# Usable wherever Twisted's asyncio reactor runs on the current loop (gateway.reactor):
#     async with TwilioApi(ACCOUNT_SID, AUTH_TOKEN) as api:
#         base_url = api.url; then api.requests, api.fail_next(429, 20429, "Too Many Requests",
#         {"Retry-After": "3"}), api.drop_next(), api.slow_next(2.0), api.report_status = ...

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator
from twisted.internet import defer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

E164 = re.compile(r"\+[1-9][0-9]{1,14}")
MESSAGING_SERVICE = re.compile(r"MG[0-9a-fA-F]{32}")
MAX_BODY = 1600
# Twilio's own default and largest page of a list
PAGE_SIZE, MAX_PAGE_SIZE = 50, 1000


@dataclass(frozen=True)
class TwilioRequest:
    """One message the stand-in accepted: its form fields, credentials, the sid answered and
    when it was created (epoch seconds, on the stand-in's clock)."""

    form: dict[str, str]
    user: str
    password: str
    content_type: str
    sid: str
    created: float = 0.0


@dataclass(frozen=True)
class Scripted:
    """An error answered instead of the next request's normal answer."""

    status: int
    code: int | None
    message: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Drop:
    """The connection closed without an answer: after the message was taken (`accepted`, the
    lost answer), or before (the request never made it)."""

    accepted: bool = True


@dataclass(frozen=True)
class Slow:
    """The message taken, and the answer sent only after `delay` seconds."""

    delay: float


Behaviour = Scripted | Drop | Slow


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
    auth, form fields checked, 201 with the message's JSON; records what it accepts.
    GET on the same path lists the messages taken, newest first, filtered by To and From,
    by pages. Faults: scripted errors (`fail_next`), answers lost after the message was
    taken (`drop_next`) or late (`slow_next`), or chosen per request by `policy`.
    With `report_status`, each message taken gets that signed status callback at once."""

    def __init__(
        self, account_sid: str, auth_token: str, now: Callable[[], float] = time.time
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.now = now
        self.requests: list[TwilioRequest] = []
        # Every POST's form, taken or not: the attempts.
        self.posts: list[dict[str, str]] = []
        # Every list query's parameters.
        self.lookups: list[dict[str, str]] = []
        self.scripted: deque[Behaviour] = deque()
        self.scripted_lookups: deque[Scripted] = deque()
        self.policy: Callable[[dict[str, str]], Behaviour | None] | None = None
        self.report_status: str | None = None
        # HTTP status the webhook answered to each status callback posted.
        self.report_answers: list[int] = []
        self.statuses: dict[str, str] = {}
        self.url = ""
        self._port: Any = None
        self._site = Site(_Messages(self))
        self._reporting: set[asyncio.Future[None]] = set()

    async def start(self) -> TwilioApi:
        from twisted.internet import reactor  # the running (asyncio) reactor, once installed

        # port 0: the system picks a free port, with no window for another listener to take it
        self._port = reactor.listenTCP(0, self._site, interface="127.0.0.1")
        self.url = f"http://127.0.0.1:{self._port.getHost().port}"
        return self

    async def stop(self) -> None:
        """Stop listening, once the status callbacks under way are posted; connections still
        open end when their clients close them."""
        await self.reported()
        stopped = defer.maybeDeferred(self._port.stopListening)
        await stopped.asFuture(asyncio.get_running_loop())

    async def reported(self) -> None:
        """Wait for the status callbacks under way."""
        while self._reporting:
            await asyncio.gather(*self._reporting, return_exceptions=True)

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

    def drop_next(self, accepted: bool = True, times: int = 1) -> None:
        """Close the next `times` connections without an answer, the message taken or not."""
        self.scripted.extend([Drop(accepted)] * times)

    def slow_next(self, delay: float, times: int = 1) -> None:
        """Take the next `times` messages and answer each `delay` seconds later."""
        self.scripted.extend([Slow(delay)] * times)

    def fail_lookups(self, status: int, code: int | None, message: str, times: int = 1) -> None:
        """Answer the next `times` list queries with this error."""
        self.scripted_lookups.extend([Scripted(status, code, message)] * times)

    def report(self, sid: str, status: str) -> None:
        """Post a signed status callback for message `sid` to its StatusCallback, as Twilio
        does (in the background; `reported()` waits for it)."""
        taken = next(request for request in self.requests if request.sid == sid)
        self.statuses[sid] = status
        url = taken.form.get("StatusCallback")
        if not url:
            return
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "From": taken.form.get("From", ""),
            "MessageSid": sid,
            "MessageStatus": status,
            "SmsSid": sid,
            "SmsStatus": status,
            "To": taken.form["To"],
        }
        signature = RequestValidator(self.auth_token).compute_signature(url, params)
        posted = asyncio.ensure_future(self._post(url, params, signature))
        self._reporting.add(posted)
        posted.add_done_callback(self._reporting.discard)

    async def _post(self, url: str, params: dict[str, str], signature: str) -> None:
        import treq

        loop = asyncio.get_running_loop()
        headers = {"X-Twilio-Signature": signature}
        # Twilio tries again when the callback fails; so does the stand-in, a few times.
        for _ in range(20):
            try:
                response = await treq.post(url, data=params, headers=headers).asFuture(loop)
                await treq.content(response).asFuture(loop)
            except Exception:
                await asyncio.sleep(0.2)
                continue
            self.report_answers.append(response.code)
            if response.code < 500:
                return
            await asyncio.sleep(0.2)

    def handle(self, request: Request) -> bytes | int:
        """The answer to one request, or NOT_DONE_YET for one answered later or never."""
        path = request.path.decode()
        messages = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        if request.method == b"GET" and path == messages:
            return self._reply(request, *self._list(request))
        if request.method != b"POST":
            return self._reply(request, *_error(405, 20004, "Method not allowed"))
        form = {key.decode(): values[0].decode() for key, values in (request.args or {}).items()}
        self.posts.append(form)
        behaviour = self.scripted.popleft() if self.scripted else None
        if isinstance(behaviour, Scripted):
            failure = behaviour
            body = error_body(failure.status, failure.code, failure.message)
            return self._reply(request, failure.status, body, failure.headers)
        if path != messages:
            return self._reply(
                request, *_error(404, 20404, f"The requested resource {path} was not found")
            )
        user, password = request.getUser().decode(), request.getPassword().decode()
        if (user, password) != (self.account_sid, self.auth_token):
            return self._reply(request, *_error(401, 20003, "Authenticate"))
        refusal = self._refusal(form)
        if refusal is not None:
            return self._reply(request, *refusal)
        if behaviour is None and self.policy is not None:
            behaviour = self.policy(form)
            if isinstance(behaviour, Scripted):
                body = error_body(behaviour.status, behaviour.code, behaviour.message)
                return self._reply(request, behaviour.status, body, behaviour.headers)
        if isinstance(behaviour, Drop) and not behaviour.accepted:
            request.channel.transport.abortConnection()
            return NOT_DONE_YET
        sid = "SM" + uuid.uuid4().hex
        taken = TwilioRequest(
            form=form,
            user=user,
            password=password,
            content_type=(request.getHeader("content-type") or ""),
            sid=sid,
            created=self.now(),
        )
        self.requests.append(taken)
        self.statuses[sid] = "accepted" if "MessagingServiceSid" in form else "queued"
        if self.report_status is not None:
            self.report(sid, self.report_status)
        answer = json.dumps(self._message(taken)).encode()
        if isinstance(behaviour, Drop):
            request.channel.transport.abortConnection()
            return NOT_DONE_YET
        if isinstance(behaviour, Slow):
            from twisted.internet import reactor

            gone: list[bool] = []
            request.notifyFinish().addErrback(lambda _: gone.append(True))

            def late() -> None:
                if not gone:
                    request.write(self._reply(request, 201, answer, {}))
                    request.finish()

            reactor.callLater(behaviour.delay, late)
            return NOT_DONE_YET
        return self._reply(request, 201, answer, {})

    def _list(self, request: Request) -> tuple[int, bytes, dict[str, str]]:
        query = {key.decode(): values[0].decode() for key, values in (request.args or {}).items()}
        self.lookups.append(query)
        if self.scripted_lookups:
            failure = self.scripted_lookups.popleft()
            return failure.status, error_body(failure.status, failure.code, failure.message), {}
        user, password = request.getUser().decode(), request.getPassword().decode()
        if (user, password) != (self.account_sid, self.auth_token):
            return _error(401, 20003, "Authenticate")
        size = min(int(query.get("PageSize", PAGE_SIZE)), MAX_PAGE_SIZE)
        page = int(query.get("Page", 0))
        chosen = [
            taken
            for taken in self.requests
            if query.get("To") in (None, taken.form["To"])
            and query.get("From") in (None, taken.form.get("From"))
        ]
        # newest first; of two created in the same second, the one taken last
        newest = sorted(
            enumerate(chosen), key=lambda pair: (int(pair[1].created), pair[0]), reverse=True
        )
        shown = [taken for _, taken in newest[page * size : (page + 1) * size]]
        base = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        filters = {key: query[key] for key in ("To", "From") if key in query}

        def uri(number: int) -> str:
            return f"{base}?{urlencode({**filters, 'PageSize': size, 'Page': number})}"

        more = (page + 1) * size < len(newest)
        listing = {
            "messages": [self._message(taken) for taken in shown],
            "page": page,
            "page_size": size,
            "start": page * size,
            "end": page * size + max(len(shown) - 1, 0),
            "uri": uri(page),
            "first_page_uri": uri(0),
            "previous_page_uri": uri(page - 1) if page else None,
            "next_page_uri": uri(page + 1) if more else None,
        }
        return 200, json.dumps(listing).encode(), {}

    @staticmethod
    def _reply(request: Request, status: int, body: bytes, headers: dict[str, str]) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        for name, value in headers.items():
            request.setHeader(name.encode(), value.encode())
        return body

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
        validity = form.get("ValidityPeriod")
        if validity is not None and not (validity.isdigit() and 1 <= int(validity) <= 36_000):
            # Twilio's error 21624 (docs/api/errors/21624): 1 to 36,000 seconds.
            return _error(
                400, 21624, "Validity period can only be set to integers between 1 and 36,000"
            )
        return None

    def _message(self, taken: TwilioRequest) -> dict[str, Any]:
        form, sid = taken.form, taken.sid
        created = format_datetime(datetime.fromtimestamp(int(taken.created), UTC))
        status = self.statuses.get(sid, "queued")
        service = form.get("MessagingServiceSid")
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": form["Body"],
            "date_created": created,
            # documented: null until Twilio hands the message on to the carrier
            "date_sent": None if status in ("accepted", "queued") else created,
            "date_updated": created,
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
            "status": status,
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

    def render(self, request: Request) -> bytes | int:
        return self.api.handle(request)
