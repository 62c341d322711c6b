"""The HTTP client of the HTTP SMS providers: treq on the daemon's reactor, pooled
connections, one time limit per call, and transport failures as temporary errors, those
after the request may have reached the provider told apart (`maybe_sent`)."""

from __future__ import annotations

import asyncio
from typing import Any

from treq.client import HTTPClient
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    RequestTransmissionFailed,
    ResponseFailed,
)

from gateway.sms_provider import ProviderError

# twisted.web.client's pool and agent have no type hints, and mypy does not take zope
# interfaces (IAgent) for types: both are used as Any
_Pool: Any = HTTPConnectionPool
_Agent: Any = Agent


class ProviderHttp:
    """Calls one provider (`name`, reached at `where`), each call answered in `timeout`."""

    def __init__(self, name: str, where: str, timeout: float, max_connections: int = 2) -> None:
        # imported here, once the daemon has installed its asyncio reactor: importing it
        # when the plugin loads (with the configuration) would install the default one
        from twisted.internet import reactor

        self.name = name
        self.where = where
        self.timeout = timeout
        self._pool = _Pool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = max_connections
        self._http = HTTPClient(_Agent(reactor, pool=self._pool))

    async def request(self, method: str, url: str, **options: Any) -> tuple[Any, bytes]:
        """The response and its body; ProviderError (temporary) when none came in time,
        `maybe_sent` unless the request surely did not reach the provider."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._http.request(
                    method, url, allow_redirects=False, **options
                ).asFuture(loop)
                body: bytes = await response.content().asFuture(loop)
        except TimeoutError:
            # Whether the request had gone out when time ran out cannot be known here.
            raise ProviderError(
                "",
                f"{self.name} ({self.where}) did not answer within {self.timeout:g}s",
                temporary=True,
                maybe_sent=True,
            ) from None
        except (ConnectError, DNSLookupError) as exc:
            raise ProviderError(
                "", f"cannot reach {self.name} at {self.where}: {exc}", temporary=True
            ) from exc
        except (ResponseFailed, RequestTransmissionFailed) as exc:
            reasons = "; ".join(reason.getErrorMessage() for reason in exc.reasons)
            raise ProviderError(
                "",
                f"connection to {self.name} at {self.where} failed: {reasons}",
                temporary=True,
                # The whole request was sent, the answer lost: the provider may have acted on
                # it. A request not sent whole (RequestTransmissionFailed) cannot have been.
                maybe_sent=isinstance(exc, ResponseFailed),
            ) from exc
        return response, body

    async def close(self) -> None:
        await self._pool.closeCachedConnections().asFuture(asyncio.get_running_loop())
