"""The SMTP transports: through a smarthost, or straight to each domain's MX hosts, both
on the pooled sessions of smtp_client."""

# Importing this module imports twisted.mail.smtp (through smtp_client): import it only after
# gateway.reactor.install_reactor (transports.build_transport imports it lazily for that reason).

from __future__ import annotations

import asyncio
import socket

from twisted.internet import defer

from gateway.settings import RelaySettings, StartTls, read_secret
from outbound.mx import MxResolver, NoRoute
from outbound.relay import (
    OutgoingMessage,
    RecipientResult,
    in_order,
    recipient_domain,
    split_invalid,
)
from outbound.smtp_client import Attempt, Destination, ServerAddress, SessionPolicy, trust_root


def session_policy(settings: RelaySettings, starttls: StartTls) -> SessionPolicy:
    """The policy of sessions under `settings`, with the given STARTTLS mode."""
    smarthost = settings.smarthost
    use_auth = settings.transport == "smarthost" and bool(smarthost.username)
    return SessionPolicy(
        starttls=starttls,
        helo_name=(settings.helo_name or socket.getfqdn()).encode("idna"),
        trust_root=trust_root(settings.tls_ca_file),
        username=smarthost.username.encode() if use_auth else b"",
        password=(
            read_secret(smarthost.password_file)
            if use_auth and smarthost.password_file is not None
            else b""
        ),
        connect_timeout=settings.connect_timeout.total_seconds(),
        command_timeout=settings.command_timeout.total_seconds(),
        idle_timeout=settings.connection_idle_timeout.total_seconds(),
        messages_per_connection=settings.messages_per_connection,
        max_connections=settings.max_connections_per_destination,
    )


async def _attempt(deferred: defer.Deferred[Attempt]) -> Attempt:
    result: Attempt = await deferred.asFuture(asyncio.get_running_loop())
    return result


class SmarthostTransport:
    """Every message through one server (relay.smarthost)."""

    def __init__(self, settings: RelaySettings) -> None:
        self._settings = settings
        host = settings.smarthost.host
        self._address = ServerAddress(host, host, settings.smarthost.port)
        self._pools: dict[StartTls, Destination] = {}

    def _pool(self, starttls: StartTls) -> Destination:
        if starttls not in self._pools:
            policy = session_policy(self._settings, starttls)
            self._pools[starttls] = Destination(self._address, policy)
        return self._pools[starttls]

    async def deliver(self, envelope: OutgoingMessage) -> list[RecipientResult]:
        """Send through the smarthost; hipaa envelopes only over verified TLS."""
        bounces, valid = split_invalid(envelope)
        if valid is None:
            return bounces
        starttls = "required" if envelope.require_tls else self._settings.smarthost.starttls
        attempt = await _attempt(self._pool(starttls).submit(valid))
        return in_order(envelope, bounces + attempt.results)

    async def has(self, envelope: OutgoingMessage) -> None:
        """SMTP has no way to ask a server what it took: it cannot tell."""
        return None

    async def close(self) -> None:
        """Quit every session."""
        await asyncio.gather(*(_closed(pool) for pool in self._pools.values()))


async def _closed(pool: Destination) -> None:
    await pool.close().asFuture(asyncio.get_running_loop())


class MxTransport:
    """Straight to each recipient domain's MX hosts, in preference order."""

    def __init__(self, settings: RelaySettings) -> None:
        self._settings = settings
        self._resolver = MxResolver(settings.mx.resolvers)
        self._pools: dict[tuple[str, str, StartTls], Destination] = {}
        self._policies: dict[StartTls, SessionPolicy] = {}

    def _pool(self, host: str, ip: str, starttls: StartTls) -> Destination:
        key = (host, ip, starttls)
        if key not in self._pools:
            if starttls not in self._policies:
                self._policies[starttls] = session_policy(self._settings, starttls)
            address = ServerAddress(host, ip, self._settings.mx.port)
            self._pools[key] = Destination(address, self._policies[starttls])
        return self._pools[key]

    async def deliver(self, envelope: OutgoingMessage) -> list[RecipientResult]:
        """Send to the recipients' domain; hipaa envelopes only over verified TLS."""
        bounces, valid = split_invalid(envelope)
        if valid is None:
            return bounces
        starttls = "required" if envelope.require_tls else self._settings.mx.starttls
        results = await self._send(recipient_domain(valid.recipients), valid, starttls)
        return in_order(envelope, bounces + results)

    async def _send(
        self, domain: str, envelope: OutgoingMessage, starttls: StartTls
    ) -> list[RecipientResult]:
        route = await self._resolver.route(domain)
        if isinstance(route, NoRoute):
            return [
                RecipientResult(r, route.status, 0, route.reason, None) for r in envelope.recipients
            ]
        problems: list[str] = []
        last: RecipientResult | None = None
        for host in route.hosts:
            addresses, lookup_problem = await self._resolver.addresses(host)
            if not addresses and route.implicit and lookup_problem is None:
                reason = f"5.1.2 {domain} has neither an MX nor an address record"
                return [RecipientResult(r, "bounced", 0, reason, None) for r in envelope.recipients]
            if not addresses:
                problems.append(lookup_problem or f"{host} has no address record")
            for ip in addresses:
                attempt = await _attempt(self._pool(host, ip, starttls).submit(envelope))
                if attempt.reached:
                    return attempt.results
                # RFC 5321 §5.1: a server that is down or refuses the session: try the next
                last = attempt.results[0]
                problems.append(last.response)
        code, server = (last.code, last.server) if last is not None else (0, None)
        reason = "; ".join(problems)
        return [RecipientResult(r, "deferred", code, reason, server) for r in envelope.recipients]

    async def has(self, envelope: OutgoingMessage) -> None:
        """SMTP has no way to ask a server what it took: it cannot tell."""
        return None

    async def close(self) -> None:
        """Quit every session."""
        await asyncio.gather(*(_closed(pool) for pool in self._pools.values()))
