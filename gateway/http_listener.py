"""Serving a Twisted web resource on the daemon's loop (the reactor runs on asyncio)."""

from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Site

from gateway.settings import Endpoint


def listen(resource: Resource, where: Endpoint) -> Any:
    """Serve `resource` on `where` with the installed reactor; returns the listening port
    (stopListening() ends it). Tracebacks are never shown to clients."""
    from twisted.internet import reactor

    site = Site(resource)  # type: ignore[no-untyped-call]
    site.displayTracebacks = False
    tcp: Any = reactor
    return tcp.listenTCP(where.port, site, interface=where.host)
