"""Scriptable SMTP servers on loopback (aiosmtpd on the test's own loop) and TLS material."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# --- TLS material, made per test run (no key is ever committed) ---


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


@dataclass(frozen=True)
class Pki:
    """A test CA (`ca_file`), a certificate it signs for the test names, and two bad ones."""

    ca_file: Path
    good: CertFiles
    untrusted: CertFiles
    wrong_name: CertFiles


NAMES = ("localhost", "127.0.0.1", "mx1.example.com", "mx2.example.com", "example.com")


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(
    subject: str,
    names: Sequence[str],
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(directory: Path, stem: str, cert: x509.Certificate, key: Any) -> CertFiles:
    files = CertFiles(directory / f"{stem}.crt", directory / f"{stem}.key")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def make_pki(directory: Path) -> Pki:
    """A CA and server certificates: signed for NAMES, by an unknown CA, and for another name."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("mailgw test CA", (), ca_key, None)
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _certificate("unknown CA", (), other_key, None)

    def issue(stem: str, names: Sequence[str], by: Any) -> CertFiles:
        key = ec.generate_private_key(ec.SECP256R1())
        return _write(directory, stem, _certificate(names[0], names, key, by), key)

    return Pki(
        ca_file=directory / "ca.pem",
        good=issue("good", NAMES, (ca.subject, ca_key)),
        untrusted=issue("untrusted", NAMES, (other_ca.subject, other_key)),
        wrong_name=issue("wrong-name", ("other.example.net",), (ca.subject, ca_key)),
    )


# --- the scriptable aiosmtpd server ---


@dataclass(frozen=True)
class Received:
    """A message the server accepted, and over which session (1-based) it came."""

    sender: str
    recipients: list[str]
    data: bytes
    session: int
    tls: bool
    user: str | None


class _Handler:
    """Replies chosen by the addresses: see SmtpServer."""

    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_MAIL(
        self, server: _Session, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if "reject" in address:
            return "550 5.7.1 sender refused"
        if "drop" in address and not self.owner.dropped:
            # hang up without a reply, as a server closing an idle connection at that moment
            self.owner.dropped = True
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: _Session, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.owner.rcpt_replies:
            return self.owner.rcpt_replies[address]
        if "reject" in address:
            return f"550 5.1.1 <{address}>: no such user"
        if "defer" in address or self.owner.deferring:
            return f"450 4.2.1 <{address}>: try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: _Session, session: Any, envelope: Any) -> str:
        recipients = " ".join(envelope.rcpt_tos)
        if "slow" in recipients:
            await asyncio.sleep(self.owner.slow_seconds)
        if "pause" in recipients:
            await asyncio.sleep(0.05)
        if "datafail" in recipients:
            return "554 5.6.0 message refused"
        for recipient in envelope.rcpt_tos:
            if recipient in self.owner.data_replies:
                return self.owner.data_replies[recipient]
        held = "hold" in recipients and not self.owner.held.is_set()
        login = session.auth_data
        self.owner.messages.append(
            Received(
                sender=envelope.mail_from,
                recipients=list(envelope.rcpt_tos),
                data=envelope.original_content,
                session=server.number,
                tls=server._tls_protocol is not None,
                user=login.login.decode() if isinstance(login, LoginPassword) else None,
            )
        )
        if held:
            # Taken, and the 250 withheld until the test says: the client may die meanwhile.
            self.owner.held.set()
            await self.owner.release.wait()
        return f"250 2.0.0 queued as {len(self.owner.messages)}"


class _Session(SMTP):
    """aiosmtpd's protocol, counting sessions (one instance per TCP connection)."""

    def __init__(self, owner: SmtpServer, **options: Any) -> None:
        super().__init__(_Handler(owner), **options)
        self.owner = owner
        owner.sessions += 1
        self.number = owner.sessions
        owner.active.add(self)
        owner.max_active = max(owner.max_active, len(owner.active))

    def connection_lost(self, error: Exception | None) -> None:
        self.owner.active.discard(self)
        super().connection_lost(error)


class SmtpServer:
    """aiosmtpd on 127.0.0.1 (a free port), on the running loop: the same loop as the client.

    Replies by address: a sender containing "reject" gets 550, the first one containing
    "drop" a hang-up without reply; recipients containing
    "reject" 550 and "defer" 450 at RCPT; DATA waits `slow_seconds` when a recipient
    contains "slow", 50 ms for "pause", and answers 554 for "datafail". The first message
    to a recipient containing "hold" is kept, then its 250 waits for `release` (`held` is
    set meanwhile). `rcpt_replies` and `data_replies` give the reply (one line, or lines
    joined by CRLF, as a multi-line reply) to a recipient at RCPT or at the end of DATA.
    While `deferring` is set, every recipient gets 450 (a relay deferring all mail).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: CertFiles | None = None,
        password: str | None = None,
        auth_require_tls: bool = True,
        slow_seconds: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.password = password
        self.auth_require_tls = auth_require_tls
        self.slow_seconds = slow_seconds
        self.sessions = 0
        self.active: set[_Session] = set()
        self.max_active = 0
        self.messages: list[Received] = []
        self.rcpt_replies: dict[str, str] = {}
        self.data_replies: dict[str, str] = {}
        self.dropped = False
        self.deferring = False
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self._server: asyncio.Server | None = None

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password.decode() == self.password
        # handled=False: aiosmtpd then sends the 535 itself (it stays silent otherwise)
        return AuthResult(success=ok, handled=ok, auth_data=data)

    def _protocol(self) -> _Session:
        options: dict[str, Any] = {
            "hostname": "smtp.test",
            "loop": asyncio.get_running_loop(),
            "tls_context": self.tls.server_context() if self.tls else None,
        }
        if self.password is not None:
            options |= {
                "auth_required": True,
                "auth_require_tls": self.auth_require_tls,
                "authenticator": self._authenticate,
            }
        with warnings.catch_warnings():
            # aiosmtpd warns about AUTH without TLS, which some tests ask for on purpose
            warnings.simplefilter("ignore")
            return _Session(self, **options)

    async def __aenter__(self) -> SmtpServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for session in list(self.active):
            if session.transport is not None:
                session.transport.close()
        await self._server.wait_closed()

    async def wait_closed(self) -> None:
        """Until no session is open (the client quit or dropped them all); callers bound it."""
        while self.active:
            await asyncio.sleep(0.02)


class RawServer:
    """A TCP server that sends a fixed greeting and hangs up, or (greeting None) never speaks."""

    def __init__(self, greeting: bytes | None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.greeting = greeting
        self.host = host
        self.port = port
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            if self.greeting is None:
                await reader.read()  # until the client gives up
            else:
                writer.write(self.greeting)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
