"""SMTP delivery with twisted.mail.smtp: persistent ESMTP sessions pooled per destination."""

# Importing this module imports twisted.mail.smtp, which installs the default reactor if none
# is installed yet: import it only after gateway.reactor.install_reactor (transports.build_transport
# imports it lazily for that reason).

from __future__ import annotations

import ipaddress
import re
from collections import deque
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol, ssl
from twisted.internet import error as net_error
from twisted.internet import reactor as _reactor
from twisted.mail import smtp
from twisted.python.failure import Failure

from gateway.settings import StartTls
from outbound.relay import (
    OutgoingMessage,
    RecipientResult,
    classify,
    wire_data,
)

# twisted.mail.smtp has no type hints, and the reactor's interface types do not fit a module
# object: both are used as Any
_ESMTPClient: Any = smtp.ESMTPClient
_LOGIN: Any = smtp.LOGINAuthenticator
reactor: Any = _reactor

Reply = tuple[int, str]
"""An SMTP code (0 when the server gave none) and the text saying what happened."""


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """A server: the name its certificate must match, the address connected to, the port."""

    host: str
    connect: str
    port: int

    def label(self, ip: str | None = None) -> str:
        """host[ip]:port, as results and reasons name a server."""
        if ip is None and self.connect != self.host:
            ip = self.connect
        return f"{self.host}[{ip}]:{self.port}" if ip else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """How sessions to one destination behave: TLS, AUTH, timeouts and limits."""

    starttls: StartTls
    helo_name: bytes
    trust_root: Any
    username: bytes
    password: bytes
    connect_timeout: float
    command_timeout: float
    idle_timeout: float
    messages_per_connection: int
    max_connections: int


@dataclass(frozen=True, slots=True)
class Attempt:
    """Results of one try; `reached` is False when the server never got to the message."""

    results: list[RecipientResult]
    reached: bool


class PendingMessage:
    """A message waiting for, or being sent by, a session; its Deferred fires with an Attempt."""

    __slots__ = ("deferred", "envelope", "retried")

    def __init__(self, envelope: OutgoingMessage, deferred: defer.Deferred[Attempt]) -> None:
        self.envelope = envelope
        self.deferred = deferred
        self.retried = False

    def finish(self, attempt: Attempt) -> None:
        # a cancelled delivery (its caller gave up) has already fired
        if not self.deferred.called:
            self.deferred.callback(attempt)


def unreached(envelope: OutgoingMessage, failure: Reply, server: str) -> Attempt:
    """Every recipient deferred: the server failed before the message (even with a 5xx:
    a refused greeting or password says nothing about the message, so it must not bounce)."""
    code, reason = failure
    results = [RecipientResult(r, "deferred", code, reason, server) for r in envelope.recipients]
    return Attempt(results, reached=False)


def _text(resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else resp
    return " ".join(line.strip() for line in text.splitlines())


def _connect_problem(exc: BaseException, server: str, timeout: float) -> str:
    if isinstance(exc, net_error.ConnectionRefusedError):
        return f"connection refused to {server}"
    if isinstance(exc, net_error.TimeoutError):
        return f"connection to {server} timed out after {timeout:g}s"
    if isinstance(exc, net_error.DNSLookupError):
        return f"cannot resolve the name of {server}"
    return f"cannot connect to {server}: {exc}"


def trust_root(ca_file: Path | None) -> Any:
    """The CAs of `ca_file` (PEM, several allowed), or None for the platform's."""
    if ca_file is None:
        return None
    blocks = re.findall(
        rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", ca_file.read_bytes(), re.S
    )
    if not blocks:
        raise ValueError(f"{ca_file} holds no PEM certificate")
    certificates = [ssl.Certificate.loadPEM(b) for b in blocks]
    return ssl.trustRootFromCertificates(certificates)  # type: ignore[no-untyped-call]


def _tls_context(starttls: StartTls, hostname: str, trust: Any) -> Any:
    if starttls == "required":
        # checks the chain against the trust root and the certificate against the hostname
        return ssl.optionsForClientTLS(hostname, trustRoot=trust)
    if starttls == "opportunistic":
        # encrypts without verifying: most MX certificates would not verify, and refusing
        # them would mean sending in clear text instead
        return ssl.CertificateOptions()
    return None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class _Plain:
    """AUTH PLAIN with an empty authorization identity (Twisted's own sends the user twice)."""

    def __init__(self, user: bytes) -> None:
        self.user = user

    def getName(self) -> bytes:
        return b"PLAIN"

    def challengeResponse(self, secret: bytes, chal: object) -> bytes:
        return b"\0" + self.user + b"\0" + secret


_VERBS = {
    b"EHLO": "EHLO",
    b"HELO": "HELO",
    b"STARTTLS": "STARTTLS",
    b"AUTH": "AUTH",
    b"MAIL": "MAIL FROM",
    b"RCPT": "RCPT TO",
    b"DATA": "DATA",
    b"RSET": "RSET",
    b"QUIT": "QUIT",
}


class SmtpSession(_ESMTPClient):  # type: ignore[misc]
    """One connection: EHLO, STARTTLS and AUTH once, then its destination's messages in turn.

    Twisted calls smtpState_from once the session is set up and again after each message;
    instead of quitting when there is nothing to send, the session waits idle in its pool
    until a message comes or `idle_timeout` passes.
    """

    # Twisted's line log would keep AUTH lines (the password) in memory: not needed
    debug = False
    # Twisted's reply dispatch: codes expected next, and handlers of those and of others
    _expected: Any
    _okresponse: Any
    _failresponse: Any
    # and its transaction state: the sender, recipients accepted, and every RCPT reply
    _from: str | None
    successAddresses: list[str]
    toAddressesResult: list[tuple[str, int, bytes]]

    def __init__(self, pool: Destination) -> None:
        policy = pool.policy
        super().__init__(policy.password or None, pool.tls_context, policy.helo_name)
        self.requireTransportSecurity = policy.starttls == "required"
        self.requireAuthentication = bool(policy.username)
        if policy.username:
            self.registerAuthenticator(_Plain(policy.username))
            self.registerAuthenticator(_LOGIN(policy.username))
        self.pool = pool
        self.policy = policy
        self.server = pool.address.label()
        self.pending: PendingMessage | None = None
        self.ready = False
        self.resetting = False
        self.closing = False
        self.messages = 0
        self.setup_failure: Reply | None = None
        self.closed: defer.Deferred[None] = defer.Deferred()
        self._deadline = reactor.seconds() + policy.connect_timeout
        self._idle_timer: Any = None
        self._command = "the greeting"
        self._tls_pending = False
        self._unanswered = False

    # --- connection and setup ---

    def connection_failed(self, reason: Failure) -> None:
        """The TCP connection could not be made."""
        assert reason.value is not None
        problem = _connect_problem(reason.value, self.server, self.policy.connect_timeout)
        self.pool.session_closed(self, (0, problem))
        self.closed.callback(None)

    def connectionMade(self) -> None:
        self.server = self.pool.address.label(self.transport.getPeer().host)
        super().connectionMade()
        # connect_timeout covers the TCP connection and the greeting together
        self.setTimeout(max(self._deadline - reactor.seconds(), 0.01))

    def esmtpState_ehlo(self, code: int, resp: bytes) -> None:
        self.setTimeout(self.policy.command_timeout)
        super().esmtpState_ehlo(code, resp)

    def esmtpState_starttls(self, code: int, resp: bytes) -> None:
        self._tls_pending = True
        super().esmtpState_starttls(code, resp)

    def esmtpState_serverConfig(self, code: int, resp: bytes) -> None:
        # an EHLO reply over TLS proves the handshake, and so the verification, succeeded
        self._tls_pending = False
        super().esmtpState_serverConfig(code, resp)

    def smtpState_helo(self, code: int, resp: bytes) -> None:
        super().smtpState_helo(code, resp)
        # Twisted leaves the HELO fallback as the failure handler: a refused HELO would loop
        self._failresponse = self._setup_refused

    def authenticate(self, code: int, resp: bytes, items: dict[bytes, bytes | None]) -> None:
        if self.policy.username and not self._tlsMode and not self.pool.plain_auth_allowed:
            self._fail_setup(0, f"refusing to send the password to {self.server} without TLS")
            return
        super().authenticate(code, resp, items)

    def smtpConnectionFailed(self, code: int, resp: bytes) -> None:
        self._fail_setup(code, f"{self.server} greeted with {code} {_text(resp)}")

    def esmtpEHLORequired(self, code: int = -1, resp: bytes | None = None) -> None:
        self._fail_setup(max(code, 0), f"{self.server} refused EHLO: {_text(resp or b'')}")

    def esmtpTLSRequired(self, code: int = -1, resp: bytes | None = None) -> None:
        self._fail_setup(0, f"TLS is required but {self.server} does not offer STARTTLS")

    def esmtpTLSFailed(self, code: int = -1, resp: bytes | None = None) -> None:
        self._fail_setup(max(code, 0), f"{self.server} refused STARTTLS: {_text(resp or b'')}")

    def esmtpAUTHRequired(self, code: int = -1, resp: bytes | None = None) -> None:
        self._fail_setup(0, f"{self.server} offers neither AUTH PLAIN nor AUTH LOGIN")

    def esmtpAUTHDeclined(self, code: int = -1, resp: bytes | None = None) -> None:
        user = self.policy.username.decode("utf-8", "replace")
        self._fail_setup(
            max(code, 0), f"{self.server} refused AUTH as {user}: {_text(resp or b'')}"
        )

    esmtpAUTHServerError = esmtpAUTHDeclined
    esmtpAUTHMalformedChallenge = esmtpAUTHDeclined

    def _esmtpState_plainAuth(self, code: int, resp: bytes) -> None:
        # Twisted retries a refused PLAIN with another form; ours is the standard one already
        self.esmtpAUTHDeclined(code, resp)

    def _setup_refused(self, code: int, resp: bytes) -> None:
        self._fail_setup(code, f"{self.server} refused {self._command}: {_text(resp)}")

    def _fail_setup(self, code: int, reason: str) -> None:
        self.setup_failure = (code, reason)
        self.quit()

    # --- messages ---

    def smtpState_from(self, code: int, resp: bytes) -> None:
        self.ready = True
        self.resetting = False
        if self.pool.closing or self.messages >= self.policy.messages_per_connection:
            self.quit()
            return
        pending = self.pool.next_pending()
        if pending is None:
            self._park()
        else:
            self.start(pending)

    def start(self, pending: PendingMessage) -> None:
        """Send `pending` over this (set up, not busy) session."""
        self._cancel_idle_timer()
        self.pending = pending
        # the server may have closed a reused connection just before MAIL FROM went out
        self._unanswered = self.messages > 0
        self.messages += 1
        self.setTimeout(self.policy.command_timeout)
        self.successAddresses = []
        self.toAddressesResult = []
        super().smtpState_from(0, b"")

    def getMailFrom(self) -> str:
        assert self.pending is not None
        return self.pending.envelope.sender

    def getMailTo(self) -> list[str]:
        assert self.pending is not None
        return list(self.pending.envelope.recipients)

    def getMailData(self) -> BytesIO:
        assert self.pending is not None
        return BytesIO(wire_data(self.pending.envelope.message))

    def transformChunk(self, chunk: bytes) -> bytes:
        # the data is already CRLF and dot-stuffed (Twisted's transform expects LF lines);
        # progress while sending a large message counts as an answer for the timeout
        self.resetTimeout()
        return chunk

    def sentMail(
        self,
        code: int,
        resp: bytes | str,
        numOk: int,
        addresses: list[tuple[str, int, bytes]],
        log: object,
    ) -> None:
        pending, self.pending = self.pending, None
        assert pending is not None
        rcpt = {address: (c, _text(r)) for address, c, r in addresses}
        final: Reply = (code, _text(resp))
        results = []
        for recipient in pending.envelope.recipients:
            reply = rcpt.get(recipient, final)
            if self._command == "MAIL FROM" or (numOk and 200 <= reply[0] < 300):
                # MAIL FROM, DATA and end-of-data replies apply to every accepted recipient
                reply = final
            results.append(_result(recipient, reply, self.server))
        pending.finish(Attempt(results, reached=True))

    def smtpState_msgSent(self, code: int, resp: bytes) -> None:
        if self._from is not None:
            self.sentMail(code, resp, len(self.successAddresses), self.toAddressesResult, None)
        self._from = None
        self.toAddressesResult = []
        if self._command in ("RCPT TO", "DATA"):
            # a transaction stopped before its end-of-data is still open: reset it
            self.resetting = True
            self.sendLine(b"RSET")
            self._expected = smtp.SUCCESS
            self._okresponse = self.smtpState_from
            self._failresponse = self._closed_by_server
        else:
            self.smtpState_from(code, resp)

    # --- idle, errors, end ---

    def _park(self) -> None:
        self.setTimeout(None)
        # nothing is expected while idle: any reply (a 421 before the server closes) ends it
        self._expected = []
        self._okresponse = self._failresponse = self._closed_by_server
        self._idle_timer = reactor.callLater(self.policy.idle_timeout, self._idle_expired)
        self.pool.session_idle(self)

    def _idle_expired(self) -> None:
        self._idle_timer = None
        self.pool.forget_idle(self)
        self.quit()

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _closed_by_server(self, code: int, resp: bytes) -> None:
        self.pool.forget_idle(self)
        self._cancel_idle_timer()
        self.closing = True
        self.transport.loseConnection()

    def quit(self) -> None:
        """Send QUIT (once) and close when the server answers."""
        if self.closing:
            return
        self.closing = True
        self._cancel_idle_timer()
        self.setTimeout(self.policy.command_timeout)
        self._disconnectFromServer()

    def _failed(self, code: int, reason: str) -> None:
        """Record a failure that ends the session: the message's, or the setup's."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.finish(Attempt(self._failure_results(pending, (code, reason)), reached=True))
        elif not self.ready and self.setup_failure is None:
            self.setup_failure = (code, reason)

    def _failure_results(self, pending: PendingMessage, failure: Reply) -> list[RecipientResult]:
        # recipients refused at RCPT keep that reply; the others share the failure
        refused = {address: (c, _text(r)) for address, c, r in self.toAddressesResult if c >= 300}
        return [
            _result(r, refused.get(r, failure), self.server) for r in pending.envelope.recipients
        ]

    def sendError(self, exc: Exception) -> None:
        # what is left for here: garbled replies and errors while sending the data
        code = getattr(exc, "code", 0)
        detail = _text(getattr(exc, "resp", b"") or str(exc).encode())
        self._failed(max(code, 0), f"error talking to {self.server}: {detail}")
        self.closing = True
        self.transport.loseConnection()

    def lineReceived(self, line: bytes) -> Any:
        self._unanswered = False
        return super().lineReceived(line)

    def sendLine(self, line: bytes) -> None:
        verb = _VERBS.get(line.split(b" ", 1)[0].upper())
        # AUTH LOGIN's base64 lines could look like a verb: keep "AUTH" until set up
        if verb is not None and (self._command != "AUTH" or self.ready):
            self._command = verb
        elif line in (b".", b"\r\n."):
            self._command = "end of data"
        super().sendLine(line)

    def timeoutConnection(self) -> None:
        if not self.closing:
            if self._command == "the greeting":
                waited = f"no greeting from {self.server} within connect_timeout"
                limit = self.policy.connect_timeout
            else:
                waited = f"no reply to {self._command} from {self.server} within command_timeout"
                limit = self.policy.command_timeout
            self._failed(0, f"{waited} ({limit:g}s)")
        self.closing = True
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        super().connectionLost(reason)
        self._cancel_idle_timer()
        if self._tls_pending:
            lost = f"TLS handshake with {self.server} failed: {_tls_problem(reason)}"
        else:
            lost = f"connection to {self.server} lost at {self._command}: {reason.value}"
        pending = self.pending
        if pending is not None and self._unanswered and not pending.retried:
            self.pending = None
            pending.retried = True
            self.pool.requeue(pending)
        else:
            self._failed(0, lost)
        failure = None if self.ready else self.setup_failure
        self.pool.session_closed(self, failure)
        self.closed.callback(None)


def _result(recipient: str, reply: Reply, server: str) -> RecipientResult:
    code, text = reply
    return RecipientResult(recipient, classify(code), code, text, server)


def _tls_problem(reason: Failure) -> str:
    # pyOpenSSL errors are lists of (library, function, reason) tuples
    args = getattr(reason.value, "args", ())
    if args and isinstance(args[0], list) and args[0] and isinstance(args[0][0], tuple):
        return ", ".join(str(part[-1]) for part in args[0])
    return str(reason.value) or type(reason.value).__name__


class _SessionFactory(protocol.ClientFactory):
    """Connects one session: one factory per connection, as SMTPSenderFactory does."""

    def __init__(self, session: SmtpSession) -> None:
        self.session = session

    def buildProtocol(self, addr: Any) -> SmtpSession:
        self.session.factory = self
        return self.session

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.session.connection_failed(reason)


class Destination:
    """Sessions to one server, at most `max_connections`, and the messages waiting for them."""

    def __init__(self, address: ServerAddress, policy: SessionPolicy) -> None:
        self.address = address
        self.policy = policy
        # a password in clear text only to this machine, and only when TLS is switched off
        self.plain_auth_allowed = policy.starttls == "none" and _is_loopback(address.connect)
        # one TLS context for all the sessions (building one loads the trust root)
        self.tls_context = _tls_context(policy.starttls, address.host, policy.trust_root)
        self.closing = False
        self._waiting: deque[PendingMessage] = deque()
        self._sessions: set[SmtpSession] = set()
        self._idle: list[SmtpSession] = []

    def submit(self, envelope: OutgoingMessage) -> defer.Deferred[Attempt]:
        """Queue a message for the next free session; fires with its Attempt, never fails."""
        deferred: defer.Deferred[Attempt] = defer.Deferred(self._withdraw)
        pending = PendingMessage(envelope, deferred)
        if self.closing:
            pending.finish(unreached(envelope, (0, "the relay is closing"), self.address.label()))
        else:
            self._waiting.append(pending)
            self._dispatch()
        return deferred

    def _withdraw(self, deferred: defer.Deferred[Attempt]) -> None:
        # a cancelled message still waiting is not sent; one already on the wire goes on
        for pending in self._waiting:
            if pending.deferred is deferred:
                self._waiting.remove(pending)
                return

    def _dispatch(self) -> None:
        while self._waiting and self._idle:
            # the most recently used session first: surplus ones reach their idle timeout
            self._idle.pop().start(self._waiting.popleft())
        # sessions about to be free (being set up, or resetting) will take waiting messages
        soon_free = sum(1 for s in self._sessions if not s.ready or s.resetting)
        while (
            not self.closing
            and self._waiting
            and len(self._sessions) < self.policy.max_connections
            and soon_free < len(self._waiting)
        ):
            session = SmtpSession(self)
            self._sessions.add(session)
            soon_free += 1
            reactor.connectTCP(
                self.address.connect,
                self.address.port,
                _SessionFactory(session),
                timeout=self.policy.connect_timeout,
            )

    def next_pending(self) -> PendingMessage | None:
        """The next waiting message, for a session that is free."""
        return self._waiting.popleft() if self._waiting else None

    def requeue(self, pending: PendingMessage) -> None:
        """Put back first a message a session could not start (see SmtpSession.start)."""
        if self.closing:
            pending.finish(
                unreached(pending.envelope, (0, "the relay closed"), self.address.label())
            )
        else:
            self._waiting.appendleft(pending)

    def session_idle(self, session: SmtpSession) -> None:
        self._idle.append(session)

    def forget_idle(self, session: SmtpSession) -> None:
        if session in self._idle:
            self._idle.remove(session)

    def session_closed(self, session: SmtpSession, failure: Reply | None) -> None:
        """A session ended; `failure` when it never got ready to send."""
        self._sessions.discard(session)
        self.forget_idle(session)
        if failure is None:
            self._dispatch()
        elif not self._sessions:
            # nothing else is connected or connecting: the server is unusable for now, so
            # the waiting messages get this failure (not one new connection attempt each)
            waiting, self._waiting = self._waiting, deque()
            for pending in waiting:
                pending.finish(unreached(pending.envelope, failure, session.server))

    def close(self) -> defer.Deferred[Any]:
        """Quit every session (busy ones after their message); fires once all are closed."""
        self.closing = True
        waiting, self._waiting = self._waiting, deque()
        for pending in waiting:
            pending.finish(
                unreached(pending.envelope, (0, "the relay closed"), self.address.label())
            )
        idle, self._idle = self._idle, []
        for session in idle:
            session.quit()
        return defer.DeferredList([s.closed for s in self._sessions])
