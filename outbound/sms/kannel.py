"""The `kannel` SMS provider: Kannel's smsbox sendsms HTTP interface, and its callbacks."""

from __future__ import annotations

import hmac
from datetime import timedelta
from typing import Annotated, Literal
from urllib.parse import urlencode, urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from gateway.durations import PositiveDuration
from gateway.settings import ReadableFile, SecretFile, read_secret
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
from outbound.sms.http import ProviderHttp

# Kannel's DLR types (the %d of a dlr-url): delivered (True/False when final) and meaning.
DLR_TYPES: dict[int, tuple[bool | None, str]] = {
    1: (True, "delivered to the phone"),
    2: (False, "not delivered to the phone"),
    4: (None, "queued at the SMSC"),
    8: (None, "accepted by the SMSC"),
    16: (False, "refused by the SMSC"),
}

# Kannel's sendsms answers this (HTTP 403) to a wrong username, password or client address.
AUTH_FAILED = "Authorization failed"

# 1,600 characters of UCS-2 text are 24 parts of 67: the sendsms-user must allow that many,
# or Kannel cuts the text short without saying so.
MAX_PARTS = 24

CONFIG_TEMPLATE = """\
# mailgw sends its texts as this user ([sms.kannel] username and password_file).
# max-messages: a text of 1,600 characters takes up to {max_parts} parts; with fewer,
# Kannel silently cuts longer texts.
group = sendsms-user
username = {username}
password = {password}
max-messages = {max_parts}
concatenation = true

# Every text clients send goes to mailgw's webhook. max-messages = 0: Kannel never
# answers the client itself, not even when the webhook fails; mailgw answers with its
# own texts. %q is the sender (a leading 00 becomes +), %e the text in hexadecimal and
# %C its character set, so that no character is lost whatever the coding.
group = sms-service
keyword = default
catch-all = true
max-messages = 0
get-url = {get_url}
"""


SENDSMS = "http://127.0.0.1:13013/cgi-bin/sendsms"


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise PydanticCustomError(
            "url", "must be an http(s) URL without query, like {example}", {"example": SENDSMS}
        )
    return value


class KannelOptions(BaseModel):
    """Options of the `kannel` provider, its [sms.kannel] table."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    sendsms_url: Annotated[str, AfterValidator(_http_url)] = Field(
        SENDSMS,
        description="Kannel smsbox's sendsms URL (its sendsms-port and sendsms-url).",
    )
    username: str = Field(
        "mailgw", min_length=1, description="username of Kannel's sendsms-user group."
    )
    password_file: ReadableFile = Field(
        description="File holding the password of that sendsms-user group."
    )
    sender: str | None = Field(
        None,
        min_length=1,
        description=(
            "Sender shown on phones (the from of sendsms), a number or up to 11 letters;"
            " omitted: Kannel's default-sender, faked-sender or global-sender."
        ),
    )
    smsc: str | None = Field(
        None, min_length=1, description="smsc-id of the Kannel SMSC to route through."
    )
    dlr_mask: int = Field(
        31,
        ge=0,
        le=31,
        description=(
            "Delivery reports asked for, summed: 1 delivered, 2 undeliverable, 4 queued on the"
            " SMSC, 8 accepted by the SMSC, 16 refused by the SMSC; 0: none."
        ),
    )
    callback_secret_file: SecretFile | None = Field(
        None,
        description=(
            "File holding a secret that Kannel's callbacks carry as secret=...: callbacks"
            " without it are refused. Omitted: any callback to the webhook is taken."
        ),
    )
    timeout: PositiveDuration = Field(
        timedelta(seconds=30), description="Time allowed for one sendsms call, answer included."
    )


class KannelProvider:
    """Sends through Kannel's sendsms and reads the delivery reports and incoming texts that
    Kannel's smsbox fetches from the webhook. Kannel gives no id of its own to a sent text:
    the message's reference travels in the dlr-url and comes back in each report."""

    def __init__(self, options: KannelOptions, context: ProviderContext) -> None:
        self._options = options
        self._password = read_secret(options.password_file)
        self._secret = (
            read_secret(options.callback_secret_file) if options.callback_secret_file else None
        )
        self._status_callback = context.callback_url("status")
        self._http = ProviderHttp("Kannel", options.sendsms_url, options.timeout.total_seconds())

    async def send(self, message: TextMessage) -> Accepted:
        query: dict[str, str | bytes] = {
            "username": self._options.username,
            "password": self._password,
            "to": message.to,
            "text": message.text,
            # Kannel converts from charset to GSM 03.38 (coding 0) or to UCS-2 (coding 2)
            "coding": "2" if message.encoding == "ucs2" else "0",
            "charset": "UTF-8",
        }
        if self._options.sender is not None:
            query["from"] = self._options.sender
        if self._options.smsc is not None:
            query["smsc"] = self._options.smsc
        if self._options.dlr_mask:
            query["dlr-mask"] = str(self._options.dlr_mask)
            query["dlr-url"] = self._dlr_url(message)
        if message.valid_for is not None:
            # Kannel's validity is in minutes: the SMSC drops the text past its deadline
            # (rounded down, and at least the one minute Kannel can say).
            query["validity"] = str(max(1, message.valid_for // 60))
        url = f"{self._options.sendsms_url}?{urlencode(query)}"
        response, body = await self._http.request("GET", url)
        if response.code in (200, 202):
            return Accepted(provider_id=message.reference)
        raise _refusal(response.code, body.decode(errors="replace").strip())

    def receipt(self, request: WebhookRequest) -> DeliveryReceipt:
        self._check_secret(request, "delivery report")
        reference = _field(request, "reference", "delivery report")
        status = _field(request, "status", "delivery report")
        try:
            delivered, meaning = DLR_TYPES[int(status)]
        except (ValueError, KeyError):
            raise MalformedCallback(
                f"Kannel delivery report with unknown status {status!r}"
                f" (known: {', '.join(map(str, DLR_TYPES))})"
            ) from None
        answer = request.params.get("answer", "")
        detail = f"{status} {meaning}" + (f": {answer}" if answer else "")
        return DeliveryReceipt(provider_id=reference, delivered=delivered, detail=detail)

    def incoming(self, request: WebhookRequest) -> IncomingText:
        self._check_secret(request, "incoming message")
        sender = _field(request, "from", "incoming message")
        charset = _field(request, "charset", "incoming message")
        # Kannel leaves out %e of an empty text, and a webhook may drop empty fields
        data = request.params.get("data", "")
        try:
            raw = bytes.fromhex(data)
        except ValueError:
            raise MalformedCallback(
                "Kannel incoming message whose data is not hexadecimal: is the"
                " sms-service get-url's data=%e?"
            ) from None
        try:
            text = raw.decode(charset)
        except LookupError:
            raise MalformedCallback(
                f"Kannel incoming message in charset {charset!r}, which is not a text encoding"
            ) from None
        except UnicodeDecodeError as exc:
            raise MalformedCallback(
                f"Kannel incoming message that is not valid {charset}: {exc.reason}"
            ) from None
        return IncomingText(sender=sender, text=text)

    def acknowledgement(self, path: Literal["status", "incoming"]) -> WebhookAnswer:
        # smsbox takes only 200 and 202 for success (it retries anything else when
        # http-request-retry is set); the empty body of an incoming text is the reply that
        # the sms-service's max-messages = 0 keeps from being sent
        return WebhookAnswer(200)

    async def close(self) -> None:
        await self._http.close()

    def _dlr_url(self, message: TextMessage) -> str:
        base = message.status_callback or self._status_callback
        ours: dict[str, str | bytes] = {"reference": message.reference}
        if self._secret is not None:
            ours["secret"] = self._secret
        fixed = f"{base}{'&' if '?' in base else '?'}{urlencode(ours)}"
        # Kannel replaces %-codes in a dlr-url (%C3 would become a charset): our own
        # percent-escapes are doubled to stay as written
        return fixed.replace("%", "%%") + "&status=%d&answer=%A"

    def _check_secret(self, request: WebhookRequest, what: str) -> None:
        if self._secret is None:
            return
        given = request.params.get("secret")
        if not given:
            raise CallbackRefused(f"Kannel {what} without the secret of callback_secret_file")
        if not hmac.compare_digest(given.encode(), self._secret):
            raise CallbackRefused(f"Kannel {what} with a wrong secret")


PLUGIN = ProviderPlugin(options=KannelOptions, create=KannelProvider)


def kannel_config(options: KannelOptions, context: ProviderContext) -> str:
    """The groups to add to kannel.conf (read by smsbox) so that Kannel takes mailgw's texts
    and calls back its webhook: the sendsms-user that `options` names, with the password of
    password_file, and the default sms-service whose get-url is the webhook's incoming
    path, secret included. Kannel also needs a smsc-id on each SMSC group for delivery
    reports (and `dlr-storage`, internal by default)."""
    incoming: dict[str, str | bytes] = {}
    if options.callback_secret_file is not None:
        incoming["secret"] = read_secret(options.callback_secret_file)
    base = context.callback_url("incoming")
    fixed = f"{base}?{urlencode(incoming)}&" if incoming else f"{base}?"
    get_url = fixed.replace("%", "%%") + "from=%q&data=%e&charset=%C"
    return CONFIG_TEMPLATE.format(
        username=_quoted(options.username),
        password=_quoted(read_secret(options.password_file).decode()),
        max_parts=MAX_PARTS,
        get_url=_quoted(get_url),
    )


def _quoted(value: str) -> str:
    """A kannel.conf string value: in double quotes, with \\ and " escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _refusal(status: int, text: str) -> ProviderError:
    said = text or "(no text)"
    if status == 403 and text.startswith(AUTH_FAILED):
        # our configuration, not the text: it waits for the operator's fix
        return ProviderError(
            str(status),
            f"Kannel refused the text: {said} (username and password_file of [sms.kannel]"
            " must match a sendsms-user group of kannel.conf, which must allow this address)",
            temporary=True,
        )
    # 400: Kannel found the request malformed or the number barred; 403 otherwise: "Not
    # routable. Do not try again." Other answers (503 temporal failure, 500 sending failed,
    # 404 wrong sendsms_url) do not depend on the text.
    return ProviderError(
        str(status), f"Kannel refused the text: {said}", temporary=status not in (400, 403)
    )


def _field(request: WebhookRequest, name: str, what: str) -> str:
    value = request.params.get(name)
    if not value:
        raise MalformedCallback(f"Kannel {what} without {name}")
    return value
