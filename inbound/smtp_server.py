"""The inbound SMTP server: one aiosmtpd handler that checks recipients and queues messages."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import ssl
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway import metrics
from gateway.clock import Clock, SystemClock
from gateway.errors import GatewayError
from gateway.settings import InboundSettings
from inbound import smtp_replies as replies
from inbound.received import ReceivedMessage

log = logging.getLogger(__name__)

RecipientPolicy = Callable[[str], Awaitable[str | None]]
"""Given an envelope recipient: None to accept it, else the reply (from inbound.smtp_replies)
that refuses it."""

MessageStore = Callable[[ReceivedMessage], Awaitable[None]]
"""Queues an accepted message durably; raises if it cannot."""

# RFC 5321 4.5.3.2.7: a server waits 5 minutes for a command. aiosmtpd does not restart this
# clock during DATA, so it also bounds the whole transfer of one message.
SESSION_TIMEOUT = 300.0

# As Postfix's smtpd_junk_command_limit: commands that move no mail are counted per session, so
# that a client cannot hold a connection for ever with them; the others are not limited.
JUNK_COMMAND_LIMIT = 100
COMMAND_CALL_LIMIT = dict.fromkeys(
    ("NOOP", "RSET", "VRFY", "HELP", "HELO", "EHLO"), JUNK_COMMAND_LIMIT
) | {"*": sys.maxsize}

# What of the client's HELO goes into our Received header: a name or an address literal.
_NOT_IN_HELO = re.compile(r"[^A-Za-z0-9.:\[\]_-]")


class InboundHandler:
    """aiosmtpd hooks: recipients are accepted or refused at RCPT by the policy, and a
    message is answered 250 only once the store has queued it."""

    def __init__(
        self,
        policy: RecipientPolicy,
        store: MessageStore,
        settings: InboundSettings,
        clock: Clock | None = None,
    ) -> None:
        self.policy = policy
        self.store = store
        self.max_recipients = settings.max_recipients
        self.clock = clock or SystemClock()

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        # aiosmtpd offers AUTH once TLS is up, but nobody logs in to an MX.
        session.host_name = hostname
        return [line for line in responses if not line[4:].startswith("AUTH")]

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = await self._recipient(session, envelope, address)
        metrics.record_inbound_reply("rcpt", reply)
        return reply

    async def _recipient(self, session: Session, envelope: Envelope, address: str) -> str:
        # a recipient given twice is kept once; some servers change the case of addresses
        if address.lower() in (known.lower() for known in envelope.rcpt_tos):
            return replies.ACCEPTED_RCPT
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return replies.REJECT_TOO_MANY_RCPTS
        try:
            refusal = await self.policy(address)
        except Exception:
            log.exception("cannot check recipient <%s> from %s", address, _client(session))
            return replies.TEMPFAIL_LOCAL
        if refusal is not None:
            log.info("refused recipient <%s> from %s: %s", address, _client(session), refusal)
            return refusal
        envelope.rcpt_tos.append(address)
        return replies.ACCEPTED_RCPT

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await self._message(server, session, envelope)
        metrics.record_inbound_reply("data", reply)
        return reply

    async def _message(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        # set by then: aiosmtpd calls DATA only after HELO, MAIL, RCPT and the data
        assert session.host_name is not None and envelope.mail_from is not None
        assert envelope.original_content is not None
        message_id = uuid.uuid4().hex
        peer = _client(session)
        tls = session.ssl is not None
        received_at = self.clock.now()
        trace = received_header(
            helo=session.host_name,
            peer=peer,
            hostname=server.hostname,
            protocol=("ESMTPS" if tls else "ESMTP") if session.extended_smtp else "SMTP",
            message_id=message_id,
            recipients=envelope.rcpt_tos,
            when=received_at,
        )
        message = ReceivedMessage(
            id=message_id,
            peer=peer,
            helo=session.host_name,
            # aiosmtpd keeps the null sender as written
            mail_from="" if envelope.mail_from == "<>" else envelope.mail_from,
            rcpt_to=tuple(envelope.rcpt_tos),
            data=trace + envelope.original_content,
            received_at=received_at,
            tls=tls,
        )
        try:
            await self.store(message)
        except Exception:
            log.exception("cannot queue message %s from %s", message_id, peer)
            return replies.TEMPFAIL_QUEUE
        log.info(
            "queued %s from %s: <%s> to %s, %d bytes",
            message_id,
            peer,
            message.mail_from,
            ", ".join(f"<{r}>" for r in message.rcpt_to),
            len(message.data),
        )
        return replies.QUEUED.format(id=message_id)

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd would answer "500 Error: (<exception>) <text>": a permanent failure, and
        # our internals told to a stranger
        log.error("inbound SMTP session failed", exc_info=error)
        return replies.TEMPFAIL_LOCAL


def _client(session: Session) -> str:
    # aiosmtpd types `peer` as str, but it holds the transport's peername: (address, port, ...)
    peername: tuple[str, int] = session.peer  # type: ignore[assignment]
    return peername[0]


def received_header(
    *,
    helo: str,
    peer: str,
    hostname: str,
    protocol: str,
    message_id: str,
    recipients: list[str],
    when: float,
) -> bytes:
    """Our trace header (RFC 5321 4.4), with the protocol names of RFC 3848; the recipient
    is named only when there is one, so that recipients do not learn of each other."""
    literal = f"IPv6:{peer}" if ipaddress.ip_address(peer).version == 6 else peer
    recipient = f"\r\n\tfor <{recipients[0]}>" if len(recipients) == 1 else ""
    date = format_datetime(datetime.fromtimestamp(when, UTC))
    return (
        f"Received: from {_NOT_IN_HELO.sub('?', helo)} ([{literal}])\r\n"
        f"\tby {hostname} with {protocol} id {message_id}{recipient};\r\n"
        f"\t{date}\r\n"
    ).encode("ascii")


class InboundServer:
    """The listening socket, and the sessions it let in so that closing ends them too.

    aiosmtpd has no hook at connection time, so every connection first meets a small
    protocol (_Gate) that counts the client's open connections: over the limit it answers
    REJECT_TOO_MANY_CONNECTIONS and hangs up, else it hands the transport to a new aiosmtpd
    SMTP protocol. Connections are counted by their transports' is_closing(), so nothing
    needs telling when one ends, before or after STARTTLS.
    """

    def __init__(
        self,
        settings: InboundSettings,
        handler: InboundHandler,
        tls_context: ssl.SSLContext | None,
        session_timeout: float,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.tls_context = tls_context
        self.session_timeout = session_timeout
        # aiosmtpd would ask the resolver again for every connection
        self.hostname = settings.hostname or socket.getfqdn()
        # every session let in, and its client's IP address
        self.sessions: dict[asyncio.Transport, str] = {}
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        host, port = self.settings.listen
        self.server = await asyncio.get_running_loop().create_server(
            lambda: _Gate(self), host, port
        )
        log.info("inbound SMTP server listening on %s", self.settings.listen)

    def admit(self, transport: asyncio.Transport) -> None:
        """Start an SMTP session on a new connection, or refuse it if its client has too
        many open."""
        peername = transport.get_extra_info("peername")
        if peername is None:  # the client has already gone
            transport.close()
            return
        client: str = peername[0]
        self.sessions = {t: ip for t, ip in self.sessions.items() if not t.is_closing()}
        open_ = sum(1 for ip in self.sessions.values() if ip == client)
        if open_ >= self.settings.max_connections_per_client:
            log.warning("refused a connection from %s: %d already open", client, open_)
            reply = replies.REJECT_TOO_MANY_CONNECTIONS.format(hostname=self.hostname)
            metrics.record_inbound_reply("connect", reply)
            transport.write(reply.encode("ascii") + b"\r\n")
            transport.close()
            return
        self.sessions[transport] = client
        # aiosmtpd greets the session with its 220
        metrics.record_inbound_reply("connect", "220")
        session = SMTP(
            self.handler,
            hostname=self.hostname,
            ident=replies.GREETING_IDENT,
            data_size_limit=self.settings.max_message_size,
            tls_context=self.tls_context,
            timeout=self.session_timeout,
            command_call_limit=COMMAND_CALL_LIMIT,
            loop=asyncio.get_running_loop(),
        )
        transport.set_protocol(session)
        session.connection_made(transport)

    def close(self) -> None:
        """Stop listening and end every open session."""
        if self.server is not None:
            self.server.close()
        for transport in self.sessions:
            transport.close()

    async def wait_closed(self) -> None:
        """Until the listening socket is closed (after close())."""
        if self.server is not None:
            await self.server.wait_closed()


class _Gate(asyncio.Protocol):
    """The first protocol of every connection: see InboundServer."""

    def __init__(self, server: InboundServer) -> None:
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.server.admit(transport)


def tls_context(settings: InboundSettings) -> ssl.SSLContext | None:
    """The STARTTLS context of inbound.tls_cert and tls_key; None when they are not set."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    # an MX asks for no client certificate (CLIENT_AUTH: the server side of TLS)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (ssl.SSLError, OSError) as exc:
        raise GatewayError(
            f"inbound.tls_cert {settings.tls_cert} and tls_key {settings.tls_key}: cannot load "
            f"them (PEM files, the key matching the certificate's first entry): {exc}"
        ) from exc
    return context


async def start_server(
    settings: InboundSettings, handler: InboundHandler, *, session_timeout: float = SESSION_TIMEOUT
) -> InboundServer:
    """The inbound SMTP server listening on inbound.listen, on the running loop; end it with
    close() then wait_closed(), as an asyncio.Server."""
    server = InboundServer(settings, handler, tls_context(settings), session_timeout)
    await server.start()
    return server
