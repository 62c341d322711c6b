"""The SMS provider contract: what a provider plugin implements, and how plugins are found."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from gateway.errors import GatewayError

ENTRY_POINT_GROUP = "mailgw.sms_providers"

Encoding = Literal["gsm7", "ucs2"]


@dataclass(frozen=True, slots=True)
class TextMessage:
    """One text to send: to an E.164 number, already checked (at most 1,600 characters)."""

    to: str
    text: str
    # Unique per (job, number): providers that take a client reference get this one,
    # and it comes back in delivery reports that carry no id of the provider's own.
    reference: str
    encoding: Encoding
    parts: int
    # Where the provider should post this message's delivery reports, if it can.
    status_callback: str | None = None
    # Seconds the text is still worth delivering (its deadline, gateway/deadlines.py), for
    # the providers that can stop their own retries then; None: no deadline.
    valid_for: int | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """The provider took the message; `provider_id` names it in later delivery reports."""

    provider_id: str


class ProviderError(GatewayError):
    """The provider did not take a message, or did not say. `temporary`: try again later
    (throttling, 5xx, unreachable); else never (bad number, opted out at the carrier).
    `opted_out`: the provider says the number refuses our texts. `maybe_sent`: the request
    may have reached the provider and its answer was lost (the connection dropped after it
    was sent, no answer in time): the text may be out, so it is not sent again before the
    provider is asked (temporary errors only)."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        temporary: bool,
        retry_after: float | None = None,
        opted_out: bool = False,
        maybe_sent: bool = False,
    ) -> None:
        self.code = code
        self.detail = detail
        self.temporary = temporary
        self.retry_after = retry_after
        self.opted_out = opted_out
        self.maybe_sent = maybe_sent
        super().__init__(f"{code}: {detail}" if code else detail)


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A provider's HTTP callback as the webhook received it."""

    method: str
    # The URL the provider called, rebuilt on the configured public URL (Twilio signs it).
    url: str
    # Header names in lower case.
    headers: Mapping[str, str]
    # Form fields of a POST, query parameters of a GET (the first value of each).
    params: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """A delivery report: `delivered` True or False when final, None while in transit."""

    provider_id: str
    delivered: bool | None
    detail: str


@dataclass(frozen=True, slots=True)
class IncomingText:
    """A text a client sent to our number."""

    sender: str
    text: str


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    """What the webhook answers the provider with."""

    status: int = 204
    content_type: str = "text/plain; charset=utf-8"
    body: bytes = b""


class CallbackRefused(GatewayError):
    """A callback that is not the provider's (unsigned, forged, wrong secret): 403."""


class MalformedCallback(GatewayError):
    """A callback that lacks what the provider always sends: 400."""


class SmsProvider(Protocol):
    """Sends texts and reads its own callbacks. `send` raises ProviderError on refusal."""

    async def send(self, message: TextMessage) -> Accepted: ...

    def receipt(self, request: WebhookRequest) -> DeliveryReceipt:
        """A delivery report posted to /sms/<provider>/status; CallbackRefused,
        MalformedCallback."""
        ...

    def incoming(self, request: WebhookRequest) -> IncomingText:
        """A client's text posted to /sms/<provider>/incoming; CallbackRefused,
        MalformedCallback."""
        ...

    def acknowledgement(self, path: Literal["status", "incoming"]) -> WebhookAnswer:
        """What the webhook answers an accepted callback with."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class SentTextLookup(Protocol):
    """What a provider offers, besides `SmsProvider`, if it can be asked which texts it
    took: before a text whose answer was lost is sent again, the gateway asks it."""

    async def find_sent(self, message: TextMessage, since: float) -> list[Accepted]:
        """The texts it took to `message.to` with `message.text` (or `message.reference`,
        if it keeps one) from `since` (epoch seconds, the gateway's clock: allow for the
        provider's) on, oldest first; [] if none. ProviderError when it cannot tell now."""
        ...


def sent_lookup(provider: SmsProvider) -> SentTextLookup | None:
    """The provider, if it can be asked which texts it took."""
    return provider if isinstance(provider, SentTextLookup) else None


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What the gateway gives every provider besides its options."""

    name: str
    # Base URL providers reach the webhook at; callbacks go to <base>/sms/<name>/<path>.
    webhook_url: str
    state_dir: Path

    def callback_url(self, path: Literal["status", "incoming"]) -> str:
        return f"{self.webhook_url.rstrip('/')}/sms/{self.name}/{path}"


_Options = TypeVar("_Options", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class ProviderPlugin(Generic[_Options]):
    """What an entry point of `mailgw.sms_providers` names: the provider's options
    model (its [sms.<name>] table, checked when the configuration loads) and a
    factory. Make it on the daemon's running loop."""

    options: type[_Options]
    create: Callable[[_Options, ProviderContext], SmsProvider]


class UnknownProvider(GatewayError):
    """No installed plugin has that name."""


def find_plugin(name: str) -> ProviderPlugin[Any]:
    """The plugin registered under `name` in the entry-point group."""
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not found:
        known = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
        raise UnknownProvider(
            f"no SMS provider '{name}' is installed (installed: {', '.join(known)})"
        )
    plugin = next(iter(found)).load()
    if not isinstance(plugin, ProviderPlugin):
        raise UnknownProvider(
            f"entry point '{name}' of {ENTRY_POINT_GROUP} is not a ProviderPlugin"
        )
    return plugin


def check_options(
    plugin: ProviderPlugin[_Options], table: Mapping[str, Any], base_dir: Path | None
) -> _Options:
    """The [sms.<name>] table validated by the plugin's model; relative paths are
    taken from the configuration file's folder. Raises pydantic's ValidationError."""
    return plugin.options.model_validate(dict(table), context={"base_dir": base_dir})
