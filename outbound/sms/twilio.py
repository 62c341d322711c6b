"""The `twilio` SMS provider: Twilio's Messages REST API (treq), and its signed webhooks."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode, urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from gateway.durations import PositiveDuration
from gateway.settings import ReadableFile, read_secret
from gateway.sms_provider import (
    Accepted,
    CallbackRefused,
    DeliveryReceipt,
    IncomingText,
    MalformedCallback,
    ProviderContext,
    ProviderError,
    ProviderPlugin,
    TextMessage,
    WebhookAnswer,
    WebhookRequest,
)
from gateway.validation_errors import invalid, repeats
from outbound.sms.http import ProviderHttp
from outbound.sms.twilio_signature import SIGNATURE, signature_problem

# Connections kept open to Twilio, so that concurrent sends do not each pay a TLS handshake.
MAX_CONNECTIONS = 16

# Refusals that say our own account or sender is misconfigured (credentials, From number,
# Messaging Service), not that this text is undeliverable: they are temporary so that texts
# wait for the operator's fix instead of being lost; throttling codes are temporary too.
TEMPORARY_CODES = frozenset(
    {
        20003,  # authentication failed
        20429,  # too many requests
        14107,  # message send rate exceeded
        21212,  # invalid From number
        21601,  # From is not an SMS-capable number of this account
        21606,  # From cannot send messages (to this destination)
        21659,  # From is not a Twilio number
        21661,  # From is not SMS-capable
        21701,  # Messaging Service does not exist
        21705,  # Messaging Service is invalid
    }
)
# 401/403: wrong credentials; 404: wrong account or base_url. Operator errors, as above.
TEMPORARY_STATUSES = frozenset({401, 403, 404, 429})
OPTED_OUT = 21610

# Final statuses of a status callback; the others (queued, sending, sent...) are in transit.
OUTCOMES = {
    "delivered": True,
    "read": True,
    "undelivered": False,
    "failed": False,
    "canceled": False,
}

EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'

# Looking for a text whose answer was lost: messages created this long before the first
# request count too (Twilio's clock and ours differ, its times are whole seconds), and at
# most this many pages of the number's messages, newest first, are read.
CLOCK_MARGIN = 60.0
LOOKUP_PAGE_SIZE = 50
LOOKUP_PAGES = 5
# Twilio did not send these: a text found in them is not out.
NOT_SENT = frozenset({"failed", "canceled"})


def _holding(what: str) -> Callable[[Path], Path]:
    def check(path: Path) -> Path:
        if not read_secret(path):
            raise PydanticCustomError(
                "secret_empty", "{message}", {"message": f"{path} is empty: put {what} in it"}
            )
        return path

    return check


def _api_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PydanticCustomError("url", "must be an http(s) URL, like https://api.twilio.com", {})
    if parts.query or parts.fragment or parts.path.strip("/"):
        raise PydanticCustomError("url", "must be a bare origin, like https://api.twilio.com", {})
    if parts.scheme == "http" and not _loopback(parts.hostname):
        # plain http would carry the auth token in clear: only for a local stand-in
        raise PydanticCustomError("url", "http is only allowed to a loopback address", {})
    return value.rstrip("/")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


# Twilio's longest ValidityPeriod, in seconds (its error 90007).
MAX_VALIDITY = 36_000


class SharedKey(BaseModel):
    """A Twilio SharedKey that a Webhook Setting signs webhooks with."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: str = Field(
        pattern=r"^[A-Za-z0-9._-]{1,200}$",
        description="The SharedKey's id, as the X-Twilio-Webhooks-Signature-Settings header "
        "names it (key=...).",
    )
    secret_file: Annotated[ReadableFile, AfterValidator(_holding("its secret"))] = Field(
        description="File holding the secret Twilio returned when the SharedKey was created."
    )


class TwilioOptions(BaseModel):
    """Options of the `twilio` provider, its [sms.twilio] table."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    account_sid: str = Field(
        pattern=r"^AC[0-9a-fA-F]{32}$", description="Account SID (AC and 32 hex digits)."
    )
    auth_token_file: Annotated[ReadableFile, AfterValidator(_holding("the auth token"))] = Field(
        description="File holding the account's auth token (API calls, webhook signatures)."
    )
    from_number: str | None = Field(
        None,
        pattern=r"^\+[1-9][0-9]{1,14}$",
        description="Sending number in E.164 (+15551234567); or messaging_service_sid.",
    )
    messaging_service_sid: str | None = Field(
        None,
        pattern=r"^MG[0-9a-fA-F]{32}$",
        description="Messaging Service that picks the sender (MG...); or from_number.",
    )
    base_url: Annotated[str, AfterValidator(_api_url)] = Field(
        "https://api.twilio.com",
        description="API origin; http only to loopback (test stand-ins).",
    )
    timeout: PositiveDuration = Field(
        timedelta(seconds=10), description="Time allowed for one API call, answer included."
    )
    status_callbacks: bool = Field(
        True, description="Ask Twilio for delivery reports on the webhook's /sms/twilio/status."
    )
    shared_keys: tuple[SharedKey, ...] = Field(
        (),
        strict=False,
        description=(
            "SharedKeys that Twilio Webhook Settings sign the webhooks with instead of the "
            "auth token (HMAC-SHA1 or HMAC-SHA256); list the old and the new one while "
            "rotating."
        ),
    )

    @model_validator(mode="after")
    def _one_sender(self) -> TwilioOptions:
        if (self.from_number is None) == (self.messaging_service_sid is None):
            raise invalid(
                "TwilioOptions",
                [(("from_number",), "give exactly one of from_number and messaging_service_sid")],
            )
        return self

    @model_validator(mode="after")
    def _distinct_keys(self) -> TwilioOptions:
        ids = (key.id for key in self.shared_keys)
        errors = repeats("shared_keys", "id", ids, said="same id as")
        if errors:
            raise invalid("TwilioOptions", errors)
        return self


class TwilioProvider:
    """Sends through Twilio's Messages API and reads Twilio's signed callbacks."""

    def __init__(self, options: TwilioOptions, context: ProviderContext) -> None:
        self._options = options
        self._auth = (options.account_sid, read_secret(options.auth_token_file).decode())
        self._shared_keys = {key.id: read_secret(key.secret_file) for key in options.shared_keys}
        self._url = f"{options.base_url}/2010-04-01/Accounts/{options.account_sid}/Messages.json"
        self._sender = (
            ("From", options.from_number)
            if options.from_number is not None
            else ("MessagingServiceSid", str(options.messaging_service_sid))
        )
        self._status_callback = context.callback_url("status")
        self._http = ProviderHttp(
            "Twilio", options.base_url, options.timeout.total_seconds(), MAX_CONNECTIONS
        )

    async def send(self, message: TextMessage) -> Accepted:
        form = [("To", message.to), self._sender, ("Body", message.text)]
        if self._options.status_callbacks:
            form.append(("StatusCallback", message.status_callback or self._status_callback))
        if message.valid_for is not None and message.valid_for < MAX_VALIDITY:
            # Twilio's queue drops the text past its deadline (error 30036); 36,000 seconds
            # is its longest, and its default.
            form.append(("ValidityPeriod", str(max(1, message.valid_for))))
        response, body = await self._http.request("POST", self._url, data=form, auth=self._auth)
        if response.code == 201:
            return _accepted(body)
        retry_after = response.headers.getRawHeaders(b"retry-after")
        raise _refusal(response.code, body, _seconds(retry_after[0]) if retry_after else None)

    async def find_sent(self, message: TextMessage, since: float) -> list[Accepted]:
        """Twilio's messages to the number (from our number when it is one) with the same
        body, created from `since` on, oldest first. Listed by To and From rather than by
        DateSent: date_sent stays empty until Twilio hands a message on, so a text still
        queued there would not be listed."""
        query = [("To", message.to), ("PageSize", str(LOOKUP_PAGE_SIZE))]
        if self._options.from_number is not None:
            query.insert(1, ("From", self._options.from_number))
        url: str | None = f"{self._url}?{urlencode(query)}"
        start = since - CLOCK_MARGIN
        found: list[Accepted] = []
        for _ in range(LOOKUP_PAGES):
            if url is None:
                break
            response, body = await self._http.request("GET", url, auth=self._auth)
            if response.code != 200:
                error = _refusal(response.code, body, None)
                raise ProviderError(error.code, f"listing messages: {error.detail}", temporary=True)
            page = _json_object(body)
            listed = page.get("messages")
            if not isinstance(listed, list):
                raise ProviderError(
                    "", f"Twilio listed messages without a list: {body[:300]!r}", temporary=True
                )
            older = False
            for item in listed:
                created = _created(item)
                if created is None or created < start:
                    older = older or created is not None
                    continue
                if _same_text(item, message):
                    found.append(Accepted(provider_id=item["sid"]))
            next_page = page.get("next_page_uri")
            url = f"{self._options.base_url}{next_page}" if next_page and not older else None
        return found[::-1]

    def receipt(self, request: WebhookRequest) -> DeliveryReceipt:
        self._check_signature(request, "status callback")
        sid = _field(request, "MessageSid", "status callback")
        status = _field(request, "MessageStatus", "status callback")
        error = request.params.get("ErrorCode", "")
        return DeliveryReceipt(
            provider_id=sid,
            delivered=OUTCOMES.get(status),
            detail=f"{status} ({error})" if error else status,
        )

    def incoming(self, request: WebhookRequest) -> IncomingText:
        self._check_signature(request, "incoming message")
        sender = _field(request, "From", "incoming message")
        # an MMS without text has an empty Body, but Twilio always sends the field
        if "Body" not in request.params:
            raise MalformedCallback("Twilio incoming message without Body")
        return IncomingText(sender=sender, text=request.params["Body"])

    def acknowledgement(self, path: Literal["status", "incoming"]) -> WebhookAnswer:
        if path == "incoming":
            # empty TwiML: Twilio replies nothing, the gateway answers through send()
            return WebhookAnswer(200, "text/xml", EMPTY_TWIML)
        return WebhookAnswer(204)

    async def close(self) -> None:
        await self._http.close()

    def _check_signature(self, request: WebhookRequest, what: str) -> None:
        if not request.headers.get(SIGNATURE):
            raise CallbackRefused(f"unsigned Twilio {what}: no X-Twilio-Signature header")
        problem = signature_problem(request, self._auth[1].encode(), self._shared_keys)
        if problem is not None:
            raise CallbackRefused(f"forged Twilio {what}: {problem}")


PLUGIN = ProviderPlugin(options=TwilioOptions, create=TwilioProvider)


def _accepted(body: bytes) -> Accepted:
    sid = _json_object(body).get("sid")
    if not isinstance(sid, str) or not sid:
        # permanent: Twilio created the message, so sending it again could text twice
        raise ProviderError(
            "",
            f"Twilio answered 201 Created without a message sid (the text may have gone out): "
            f"{body[:300]!r}",
            temporary=False,
        )
    return Accepted(provider_id=sid)


def _refusal(status: int, body: bytes, retry_after: float | None) -> ProviderError:
    error = _json_object(body)
    code = error.get("code")
    code = code if isinstance(code, int) else None
    message = str(error.get("message") or body[:300].decode(errors="replace") or "(no text)")
    if error.get("detail"):
        message = f"{message}: {error['detail']}"
    where = f"HTTP {status}, {error['more_info']}" if error.get("more_info") else f"HTTP {status}"
    return ProviderError(
        str(code) if code is not None else "",
        f"{message} ({where})",
        temporary=not 400 <= status < 500
        or status in TEMPORARY_STATUSES
        or code in TEMPORARY_CODES,
        retry_after=retry_after,
        opted_out=code == OPTED_OUT,
    )


def _created(item: Any) -> float | None:
    """When Twilio created a listed message (epoch seconds), if it says."""
    try:
        return parsedate_to_datetime(item["date_created"]).timestamp()
    except (TypeError, KeyError, ValueError):
        return None


def _same_text(item: Any, message: TextMessage) -> bool:
    return (
        isinstance(item.get("sid"), str)
        and item.get("to") == message.to
        and item.get("body") == message.text
        and str(item.get("direction", "")).startswith("outbound")
        and item.get("status") not in NOT_SENT
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _seconds(retry_after: bytes) -> float | None:
    """Retry-After as seconds: a number of seconds, or an HTTP date."""
    text = retry_after.decode("latin-1").strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _field(request: WebhookRequest, name: str, what: str) -> str:
    value = request.params.get(name)
    if not value:
        raise MalformedCallback(f"Twilio {what} without {name}")
    return value
