"""Where a recipient domain's mail goes: MX lookup (twisted.names), ordering and fallbacks."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from twisted.names import client, dns, error

from gateway.settings import Endpoint

# Twisted's default retries add up to 60 s; 15 s is plenty for a resolver that answers at all
DNS_TIMEOUT: tuple[float, ...] = (1, 3, 11)


@dataclass(frozen=True, slots=True)
class MxHosts:
    """The hosts to try, in order; `implicit` when the domain has no MX and is its own host."""

    hosts: tuple[str, ...]
    implicit: bool = False


@dataclass(frozen=True, slots=True)
class NoRoute:
    """A domain mail cannot be sent to: bounced for good, or deferred (DNS failure)."""

    status: Literal["bounced", "deferred"]
    reason: str


Route = MxHosts | NoRoute


def _host(name: str) -> str:
    return name.lower().rstrip(".")


def order_mx(records: Iterable[tuple[int, str]], rng: random.Random) -> list[str]:
    """Hosts by MX preference, lowest first, equal preferences shuffled (RFC 5321 §5.1).

    A host listed twice keeps its best preference; the "." of a null MX is left out.
    """
    best: dict[str, int] = {}
    for preference, name in records:
        host = _host(name)
        if host and (host not in best or preference < best[host]):
            best[host] = preference
    hosts = list(best)
    rng.shuffle(hosts)
    # sort is stable: the shuffle survives among hosts of one preference
    return sorted(hosts, key=best.__getitem__)


def route_from_mx(domain: str, records: Sequence[tuple[int, str]], rng: random.Random) -> Route:
    """The route an MX answer gives: hosts, the domain itself (no MX), or a null MX bounce."""
    if not records:
        return MxHosts((domain,), implicit=True)
    hosts = order_mx(records, rng)
    if not hosts:
        # RFC 7505: a single MX of "." says the domain accepts no mail at all
        return NoRoute("bounced", f"5.1.10 {domain} accepts no mail (null MX)")
    return MxHosts(tuple(hosts))


def is_nxdomain(failure: BaseException) -> bool:
    """Whether a twisted.names error says the name does not exist (not a temporary failure)."""
    # DNSServerError and friends subclass DomainError too but are temporary (SERVFAIL...);
    # a bare DomainError is what an authority (hosts file, zone) answers for an unknown name
    return isinstance(failure, error.DNSNameError) or type(failure) is error.DomainError


class MxResolver:
    """MX and address lookups through the configured DNS servers, else the system's."""

    def __init__(
        self,
        resolvers: Sequence[Endpoint],
        rng: random.Random | None = None,
        timeout: tuple[float, ...] = DNS_TIMEOUT,
    ) -> None:
        """`timeout`: the wait for each try of a query (a try per item)."""
        self._timeout = timeout
        servers = [(r.host, r.port) for r in resolvers]
        self._resolver: Any = (
            client.Resolver(servers=servers)  # type: ignore[no-untyped-call]
            if servers
            else client.createResolver()  # type: ignore[no-untyped-call]
        )
        # shuffling equal-preference MX hosts spreads load; nothing secret depends on it
        self._rng = rng or random.Random()  # noqa: S311

    async def _query(self, method: str, name: str) -> list[Any]:
        """The answer records of a lookup; twisted.names errors are raised as they are."""
        deferred = getattr(self._resolver, method)(name, timeout=self._timeout)
        answers, _authority, _additional = await deferred.asFuture(asyncio.get_running_loop())
        return list(answers)

    async def route(self, domain: str) -> Route:
        """Where mail for `domain` goes."""
        try:
            answers = await self._query("lookupMailExchange", domain)
        except Exception as exc:
            if is_nxdomain(exc):
                return NoRoute("bounced", f"5.1.2 domain {domain} does not exist (NXDOMAIN)")
            return NoRoute("deferred", f"4.4.3 MX lookup for {domain} failed: {_describe(exc)}")
        records = [
            (rr.payload.preference, rr.payload.name.name.decode("ascii", "replace"))
            for rr in answers
            if rr.type == dns.MX
        ]
        return route_from_mx(domain, records, self._rng)

    async def addresses(self, host: str) -> tuple[list[str], str | None]:
        """The host's IPv4 then IPv6 addresses, and why the lookup failed if it did.

        IPv4 first: many networks have no IPv6 route, and a failed connection costs a
        timeout per address.
        """
        found: list[str] = []
        problems: list[str] = []
        for method, rtype in (("lookupAddress", dns.A), ("lookupIPV6Address", dns.AAAA)):
            try:
                answers = await self._query(method, host)
            except Exception as exc:
                if not is_nxdomain(exc):
                    problems.append(_describe(exc))
                continue
            family = socket.AF_INET if rtype == dns.A else socket.AF_INET6
            found.extend(
                socket.inet_ntop(family, rr.payload.address) for rr in answers if rr.type == rtype
            )
        return found, (f"address lookup for {host} failed: {problems[0]}" if problems else None)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, error.DNSQueryTimeoutError | TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
