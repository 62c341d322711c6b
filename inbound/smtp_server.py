"""The inbound SMTP server: one aiosmtpd handler that checks recipients and queues messages."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import re
import socket
import ssl
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway import metrics
from gateway.clock import Clock, SystemClock
from gateway.errors import GatewayError
from gateway.settings import InboundSettings
from inbound import smtp_replies as replies
from inbound.client_connections import ConnectionSlots
from inbound.malloc import give_back_large_blocks
from inbound.received import ReceivedMessage
from inbound.smtp_limits import LimitedSMTP

log = logging.getLogger(__name__)

RecipientPolicy = Callable[[str], Awaitable[str | None]]
"""Given an envelope recipient: None to accept it, else the reply (from inbound.smtp_replies)
that refuses it."""

MessageStore = Callable[[ReceivedMessage], Awaitable[None]]
"""Queues an accepted message durably; raises if it cannot."""

# As Postfix's smtpd_junk_command_limit: commands that move no mail are counted per session, so
# that a client cannot hold a connection for ever with them; the others are not limited.
JUNK_COMMAND_LIMIT = 100
COMMAND_CALL_LIMIT = dict.fromkeys(
    ("NOOP", "RSET", "VRFY", "HELP", "HELO", "EHLO"), JUNK_COMMAND_LIMIT
) | {"*": sys.maxsize}

# How often each server counts out the sessions whose end it could not see (see InboundServer).
SWEEP_INTERVAL = 1.0

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
        # told of each session's QUIT (by the InboundServer, which counts sessions)
        self.quitting: Callable[[SMTP], None] = lambda session: None

    # aiosmtpd looks for a handler's hooks anew for every connection (SMTP.__init__: dir(),
    # inspect.getmembers() and inspect.signature() of handle_EHLO): naming only the hooks
    # here spares much of it, and so does handle_EHLO being a plain function that carries
    # its signature (set below the class): a bound method's would be worked out each time.
    def __dir__(self) -> list[str]:
        return list(_HOOKS)

    @staticmethod
    async def handle_EHLO(
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        # aiosmtpd offers AUTH once TLS is up, but nobody logs in to an MX.
        session.host_name = hostname
        lines = [line for line in responses if not line[4:].startswith("AUTH")]
        # aiosmtpd writes each entry to the socket on its own, ending it with CRLF: as one
        # entry, the reply costs one send() instead of one per line (three of the ten sends
        # of a one-message session).
        return ["\r\n".join(lines)]

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        # Before the 221: the client may connect again as soon as it has it.
        self.quitting(server)
        return replies.BYE

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


_HOOKS = ("handle_EHLO", "handle_RCPT", "handle_DATA", "handle_QUIT", "handle_exception")
InboundHandler.handle_EHLO.__signature__ = inspect.signature(  # type: ignore[attr-defined]
    InboundHandler.handle_EHLO
)


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
    is named only when there is one, so that recipients do not learn of each other.
    `peer` is an address as the socket gives it: an IPv6 one, and only such, has colons."""
    literal = f"IPv6:{peer}" if ":" in peer else peer
    recipient = f"\r\n\tfor <{recipients[0]}>" if len(recipients) == 1 else ""
    date = format_datetime(datetime.fromtimestamp(when, UTC))
    return (
        f"Received: from {_NOT_IN_HELO.sub('?', helo)} ([{literal}])\r\n"
        f"\tby {hostname} with {protocol} id {message_id}{recipient};\r\n"
        f"\t{date}\r\n"
    ).encode("ascii")


class InboundServer:
    """The listening sockets, and the sessions they let in, so that closing ends them too.

    aiosmtpd has no hook at connection time, so every connection first meets a small
    protocol (_Gate) that counts the client's open connections in `slots`: over the limit
    it answers REJECT_TOO_MANY_CONNECTIONS and hangs up, else it hands the connection to an
    aiosmtpd SMTP protocol, behind a _Session that sees it end. After STARTTLS aiosmtpd's
    TLS layer takes the _Session's place: such a session's end is seen at its QUIT, or else
    by the sweep (its transport closing), before a refusal and every SWEEP_INTERVAL.
    """

    def __init__(
        self,
        settings: InboundSettings,
        handler: InboundHandler,
        tls_context: ssl.SSLContext | None,
        slots: ConnectionSlots,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.tls_context = tls_context
        self.slots = slots
        # aiosmtpd would ask the resolver again for every connection
        self.hostname = settings.hostname or socket.getfqdn()
        # every session let in: its TCP transport and its client's IP address
        self.sessions: dict[SMTP, tuple[asyncio.Transport, str]] = {}
        self.no_sessions = asyncio.Event()
        self.no_sessions.set()
        self.servers: list[asyncio.Server] = []
        self._sweeping: asyncio.TimerHandle | None = None
        handler.quitting = self.ended

    async def start(self, sockets: Sequence[socket.socket] = ()) -> None:
        """Listen on inbound.listen, or on `sockets` (listening already, as another
        process's server does)."""
        loop = asyncio.get_running_loop()
        if sockets:
            self.servers = [await loop.create_server(self._gate, sock=s) for s in sockets]
        else:
            host, port = self.settings.listen
            self.servers = [await loop.create_server(self._gate, host, port)]
        self._sweeping = loop.call_later(SWEEP_INTERVAL, self._sweep_now_and_then)
        log.info("inbound SMTP server listening on %s", self.settings.listen)

    def _gate(self) -> _Gate:
        return _Gate(self)

    def listening(self) -> list[int]:
        """The file descriptors of the listening sockets, for other processes to serve."""
        return [s.fileno() for server in self.servers for s in server.sockets]

    def admit(self, transport: asyncio.Transport) -> None:
        """Start an SMTP session on a new connection, or refuse it if its client has too
        many open."""
        peername = transport.get_extra_info("peername")
        if peername is None:  # the client has already gone
            transport.close()
            return
        client: str = peername[0]
        open_ = self.slots.open(client)
        if open_ is not None:
            self.sweep()
            open_ = self.slots.open(client)
        if open_ is not None:
            log.warning("refused a connection from %s: %d already open", client, open_)
            reply = replies.REJECT_TOO_MANY_CONNECTIONS.format(hostname=self.hostname)
            metrics.record_inbound_reply("connect", reply)
            transport.write(reply.encode("ascii") + b"\r\n")
            transport.close()
            return
        # aiosmtpd greets the session with its 220
        metrics.record_inbound_reply("connect", "220")
        session = LimitedSMTP(
            self.handler,
            self.settings,
            hostname=self.hostname,
            ident=replies.GREETING_IDENT,
            tls_context=self.tls_context,
            command_call_limit=COMMAND_CALL_LIMIT,
            loop=asyncio.get_running_loop(),
        )
        self.sessions[session] = (transport, client)
        self.no_sessions.clear()
        transport.set_protocol(_Session(session, self.ended))
        session.connection_made(transport)

    def ended(self, session: SMTP) -> None:
        """`session` has ended, or ends now (its QUIT is being answered)."""
        held = self.sessions.pop(session, None)
        if held is not None:
            self.slots.close(held[1])
            if not self.sessions:
                self.no_sessions.set()

    def sweep(self) -> None:
        """Count out the sessions whose end was not seen (after STARTTLS, without QUIT)."""
        for session in [s for s, (t, _) in self.sessions.items() if t.is_closing()]:
            self.ended(session)

    def _sweep_now_and_then(self) -> None:
        self.sweep()
        loop = asyncio.get_running_loop()
        self._sweeping = loop.call_later(SWEEP_INTERVAL, self._sweep_now_and_then)

    def stop(self) -> None:
        """Stop listening; the open sessions go on (see finished())."""
        for server in self.servers:
            server.close()

    async def finished(self) -> None:
        """Until every session has ended."""
        self.sweep()
        await self.no_sessions.wait()

    def close(self) -> None:
        """Stop listening and end every open session."""
        self.stop()
        if self._sweeping is not None:
            self._sweeping.cancel()
        for session, (transport, _) in list(self.sessions.items()):
            transport.close()
            self.ended(session)

    async def wait_closed(self) -> None:
        """Until the listening sockets are closed (after stop() or close())."""
        for server in self.servers:
            await server.wait_closed()


class _Gate(asyncio.Protocol):
    """The first protocol of every connection: see InboundServer."""

    def __init__(self, server: InboundServer) -> None:
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.server.admit(transport)


class _Session(asyncio.Protocol):
    """Between a connection and its aiosmtpd session, to see the connection end.

    It also closes the connection at the client's end of file: aiosmtpd would keep it
    half-open, counted until inbound.command_timeout.
    """

    def __init__(self, session: SMTP, ended: Callable[[SMTP], None]) -> None:
        self.session = session
        self.ended = ended

    def data_received(self, data: bytes) -> None:
        self.session.data_received(data)

    def pause_writing(self) -> None:
        self.session.pause_writing()

    def resume_writing(self) -> None:
        self.session.resume_writing()

    def eof_received(self) -> bool:
        self.session.eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.connection_lost(exc)
        self.ended(self.session)


def settle_for_sessions() -> None:
    """Once a process serving SMTP has started: what it holds by then is kept out of the
    garbage collector's rounds, and the large blocks sessions free go back to the system.

    Every session leaves cycles behind (aiosmtpd's protocol holds bound methods of its
    own), so the collector runs every few sessions, and now and then through every object
    of the process: modules, configuration, the loop. Those live as long as the process;
    frozen (after a last collection, so that no garbage is frozen with them), a full round
    walks only what the sessions made. A session may read a message of max_message_size
    into one buffer: see inbound/malloc.py for why its memory would otherwise stay.
    """
    gc.collect()
    gc.freeze()
    give_back_large_blocks()


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
    settings: InboundSettings, handler: InboundHandler, *, slots: ConnectionSlots | None = None
) -> InboundServer:
    """The inbound SMTP server listening on inbound.listen, on the running loop, counting
    connections in `slots` (by default, this process's alone); end it with close() then
    wait_closed(), as an asyncio.Server."""
    slots = slots or ConnectionSlots(settings.max_connections_per_client)
    server = InboundServer(settings, handler, tls_context(settings), slots)
    await server.start()
    return server
