"""General types of the main file's values: the models' strictness, DNS names, host:port
endpoints, lists that must not be empty."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, NamedTuple

from pydantic import AfterValidator, BeforeValidator, ConfigDict, PlainSerializer

from gateway.validation_errors import custom_error

# TOML values are typed, so a string where a number or boolean belongs is a mistake to
# report, not something to coerce; tuples come from TOML arrays, hence strict=False there.
MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True, strict=True)


_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def _dns_name(value: str) -> str:
    name = value.lower().rstrip(".")
    if not name.isascii():
        raise custom_error("dns_name", f"{value!r}: write an international name in its xn-- form")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise custom_error("dns_name", f"{value!r} is not a valid DNS name")
    return name


DnsName = Annotated[str, AfterValidator(_dns_name)]
"""A DNS name (lower-cased, trailing dot removed)."""


class Endpoint(NamedTuple):
    """A host (name or IP address) and a TCP port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoint(text: str, default_port: int | None = None) -> Endpoint:
    """Parse "host:port", "[v6]:port", or a bare host/IP when a default port is given."""
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r} is not host:port")
        port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not port:
        if default_port is None:
            raise ValueError(f"{text!r} is not host:port (the port is missing)")
        port = str(default_port)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port with a port from 1 to 65535")
    return Endpoint(host, int(port))


def _listen(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return parse_endpoint(value)
        except ValueError as exc:
            raise custom_error("endpoint", str(exc)) from None
    return value


def _resolver(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        endpoint = parse_endpoint(value, default_port=53)
        ipaddress.ip_address(endpoint.host)
    except ValueError:
        raise custom_error("resolver", f'{value!r} is not "ip" or "ip:port"') from None
    return endpoint


_endpoint_str = PlainSerializer(str, return_type=str)
ListenAddress = Annotated[Endpoint, BeforeValidator(_listen), _endpoint_str]
Resolver = Annotated[Endpoint, BeforeValidator(_resolver), _endpoint_str]


def not_empty(value: tuple[Any, ...]) -> tuple[Any, ...]:
    """Refuses an empty list of entries (an AfterValidator)."""
    # a length check that runs only once the items are valid (min_length would also count
    # the invalid items as missing)
    if not value:
        raise custom_error("empty", "must list at least one entry")
    return value
