"""The inbound SMTP server with real clients: swaks, Postfix's smtp-source and raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.errors import GatewayError
from gateway.settings import InboundSettings
from inbound import smtp_limits
from inbound import smtp_replies as replies
from inbound.received import ReceivedMessage
from inbound.smtp_server import (
    InboundHandler,
    InboundServer,
    MessageStore,
    received_header,
    start_server,
)
from tests.conftest import FixedClock, need_tool
from tests.redis_server import free_port
from tests.smtp_server import make_pki

HOSTNAME = "mx.test"
REPLY = "reply@replies.test"
OTHER_REPLY = "other-reply@replies.test"
THIRD_REPLY = "third-reply@replies.test"
SENDER = "client@example.org"


async def policy(address: str) -> str | None:
    """Our own domain's known addresses are accepted; a failing lookup raises."""
    local, _, domain = address.lower().rpartition("@")
    if domain != "replies.test":
        return replies.REJECT_RELAY
    if local == "broken":
        raise RuntimeError("the token store is down")
    if address.lower() not in (REPLY, OTHER_REPLY, THIRD_REPLY):
        return replies.REJECT_UNKNOWN_RCPT
    return None


class StreamStore:
    """Queues messages on a Redis stream (XADD), as the gateway's store does."""

    STREAM = "inbound-test"

    def __init__(self, client: Redis) -> None:
        self.client = client

    async def __call__(self, message: ReceivedMessage) -> None:
        await self.client.xadd(
            self.STREAM,
            {
                "id": message.id,
                "peer": message.peer,
                "helo": message.helo,
                "mail_from": message.mail_from,
                "rcpt_to": "\n".join(message.rcpt_to),
                "data": message.data,
                "received_at": repr(message.received_at),
                "tls": int(message.tls),
            },
        )

    async def messages(self) -> list[ReceivedMessage]:
        entries = await self.client.xrange(self.STREAM)
        return [
            ReceivedMessage(
                id=fields[b"id"].decode(),
                peer=fields[b"peer"].decode(),
                helo=fields[b"helo"].decode(),
                mail_from=fields[b"mail_from"].decode(),
                rcpt_to=tuple(fields[b"rcpt_to"].decode().split("\n")),
                data=fields[b"data"],
                received_at=float(fields[b"received_at"]),
                tls=fields[b"tls"] == b"1",
            )
            for _, fields in entries
        ]


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[StreamStore]:
    client = Redis.from_url(redis_url)
    yield StreamStore(client)
    await client.aclose()


Serve = Callable[..., Awaitable[int]]


@pytest.fixture
async def serve(tmp_path: Path, store: StreamStore, clock: FixedClock) -> AsyncIterator[Serve]:
    """Starts a server with [inbound] settings overridden by keywords; returns its port.
    A test's client waits no more than 10 s for a command: so does the server."""
    servers: list[InboundServer] = []

    async def start(*, message_store: MessageStore | None = None, **settings: Any) -> int:
        port = free_port()
        config = {"listen": f"127.0.0.1:{port}", "hostname": HOSTNAME, "command_timeout": "10s"}
        inbound = InboundSettings.model_validate(config | settings, context={"base_dir": tmp_path})
        handler = InboundHandler(policy, message_store or store, inbound, clock)
        servers.append(await start_server(inbound, handler))
        return port

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


# --- clients ---


@dataclass
class Swaks:
    returncode: int
    transcript: str

    @property
    def replies(self) -> list[str]:
        """The server's replies, in order (in clear and through TLS)."""
        return re.findall(r"^<[-~*]{1,2} +(\d{3}[ -].*)$", self.transcript, re.MULTILINE)


async def swaks(port: int, *args: str) -> Swaks:
    process = await asyncio.create_subprocess_exec(
        need_tool("swaks"),
        "--server", f"127.0.0.1:{port}", "--helo", "client.test", "--from", SENDER,
        "--timeout", "5", *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode is not None
    return Swaks(process.returncode, output.decode(errors="replace"))


class Client:
    """A raw SMTP client: sends exactly the bytes it is given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def reply(self) -> str:
        """One reply, its lines joined by newlines; "" when the server hung up."""
        lines: list[str] = []
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), 5)).decode().rstrip("\r\n")
            if not line:
                return "\n".join(lines)
            lines.append(line)
            if line[3:4] != "-":
                return "\n".join(lines)

    async def send(self, data: str | bytes) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def command(self, line: str) -> str:
        await self.send(line + "\r\n")
        return await self.reply()

    async def hung_up(self, within: float = 5) -> bool:
        """True once the server closes the connection (anything it still sends is skipped)."""
        try:
            async with asyncio.timeout(within):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[int], Awaitable[Client]]]:
    clients: list[Client] = []

    async def open_client(port: int) -> Client:
        client = await Client.connect(port)
        clients.append(client)
        assert await client.reply() == f"220 {HOSTNAME} {replies.GREETING_IDENT}"
        return client

    yield open_client
    for client in clients:
        client.writer.close()


# --- messages accepted and refused (swaks) ---


async def test_a_message_is_queued_with_its_envelope_and_our_received_header(
    serve: Serve, store: StreamStore, clock: FixedClock
) -> None:
    port = await serve()
    result = await swaks(port, "--to", REPLY, "--header", "Subject: Re: your appointment")

    assert result.returncode == 0, result.transcript
    [message] = await store.messages()
    assert replies.QUEUED.format(id=message.id) in result.replies
    assert (message.peer, message.helo, message.mail_from) == ("127.0.0.1", "client.test", SENDER)
    assert message.rcpt_to == (REPLY,)
    assert message.received_at == clock.now()
    assert not message.tls
    date = format_datetime(datetime.fromtimestamp(clock.now(), UTC))
    trace = (
        f"Received: from client.test ([127.0.0.1])\r\n"
        f"\tby {HOSTNAME} with ESMTP id {message.id}\r\n\tfor <{REPLY}>;\r\n\t{date}\r\n"
    )
    assert message.data.startswith(trace.encode())
    parsed = message_from_bytes(message.data)
    assert parsed.get_all("Received") == [parsed["Received"]]
    assert parsedate_to_datetime(parsed["Received"].rpartition(";")[2]).timestamp() == clock.now()
    assert parsed["Subject"] == "Re: your appointment"
    assert parsed.get_payload().strip() == "This is a test mailing"


async def test_a_relay_attempt_and_an_unknown_recipient_are_refused_at_rcpt(
    serve: Serve, store: StreamStore
) -> None:
    port = await serve()

    relay = await swaks(port, "--to", "victim@example.com")
    unknown = await swaks(port, "--to", "forged-token@replies.test")

    assert relay.returncode == 24 and relay.replies[-2:] == [replies.REJECT_RELAY, replies.BYE]
    assert unknown.returncode == 24
    assert unknown.replies[-2:] == [replies.REJECT_UNKNOWN_RCPT, replies.BYE]
    assert await store.messages() == []


async def test_recipients_beyond_the_limit_are_deferred(serve: Serve, store: StreamStore) -> None:
    port = await serve(max_recipients=2)

    result = await swaks(port, "--to", f"{REPLY},{OTHER_REPLY},{THIRD_REPLY}")

    assert result.returncode == 0, result.transcript
    assert replies.REJECT_TOO_MANY_RCPTS in result.replies
    [message] = await store.messages()
    assert message.rcpt_to == (REPLY, OTHER_REPLY)
    # a recipient is named in the trace header only when it is the only one
    assert b"\tfor <" not in message.data


async def test_an_oversized_message_is_refused(
    serve: Serve, store: StreamStore, connect: Callable[[int], Awaitable[Client]]
) -> None:
    port = await serve(max_message_size=2000)

    result = await swaks(port, "--to", REPLY, "--body", "x" * 70 + ("\n" + "x" * 70) * 40)
    assert result.returncode == 26
    assert replies.MESSAGE_TOO_BIG in result.replies

    client = await connect(port)
    assert "250-SIZE 2000" in (await client.command("EHLO client.test")).split("\n")
    reply = await client.command(f"MAIL FROM:<{SENDER}> SIZE=2001")
    assert reply == replies.MESSAGE_TOO_BIG_AT_MAIL
    assert await client.command(f"MAIL FROM:<{SENDER}> SIZE=1500") == replies.OK
    assert await store.messages() == []


async def test_a_message_that_cannot_be_queued_gets_a_temporary_failure(
    serve: Serve, store: StreamStore
) -> None:
    # a store whose Redis is not there: the real failure, not a simulated one
    unreachable = Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))
    port = await serve(message_store=StreamStore(unreachable))

    result = await swaks(port, "--to", REPLY)
    await unreachable.aclose()

    assert result.returncode == 26
    assert result.replies[-2:] == [replies.TEMPFAIL_QUEUE, replies.BYE]
    assert await store.messages() == []


async def test_starttls_with_the_configured_certificate(
    serve: Serve, store: StreamStore, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path)
    port = await serve(tls_cert=str(pki.good.cert), tls_key=str(pki.good.key), hostname="localhost")

    result = await swaks(
        port, "--to", REPLY, "-tls", "--tls-verify", "--tls-ca-path", str(pki.ca_file)
    )

    assert result.returncode == 0, result.transcript
    before, _, after = result.transcript.partition("TLS started")
    assert "250-STARTTLS" in before and "STARTTLS" not in after
    # nobody logs in to an MX: aiosmtpd's offer of AUTH once TLS is up is withdrawn
    assert "AUTH" not in result.transcript
    [message] = await store.messages()
    assert message.tls
    assert b"\tby localhost with ESMTPS id " in message.data


async def test_unusable_tls_files_are_a_clear_error(tmp_path: Path, store: StreamStore) -> None:
    pki = make_pki(tmp_path)
    settings = InboundSettings.model_validate(
        # the key of another certificate
        {"listen": f"127.0.0.1:{free_port()}", "tls_cert": str(pki.good.cert),
         "tls_key": str(pki.untrusted.key)},
    )  # fmt: skip
    handler = InboundHandler(policy, store, settings)

    with pytest.raises(
        GatewayError, match=r"inbound\.tls_cert .*good\.crt and tls_key .*untrusted"
    ):
        await start_server(settings, handler)


# --- hostile and malformed sessions (raw sockets) ---


async def test_commands_out_of_sequence(
    serve: Serve, connect: Callable[[int], Awaitable[Client]]
) -> None:
    client = await connect(await serve())

    assert await client.command(f"MAIL FROM:<{SENDER}>") == replies.HELO_FIRST
    assert await client.command(f"RCPT TO:<{REPLY}>") == replies.HELO_FIRST
    assert await client.command("DATA") == replies.HELO_FIRST
    await client.command("EHLO client.test")
    assert await client.command(f"RCPT TO:<{REPLY}>") == replies.NEED_MAIL
    assert await client.command(f"MAIL FROM:<{SENDER}>") == replies.OK
    assert await client.command("DATA") == replies.NEED_RCPT
    assert await client.command(f"MAIL FROM:<{SENDER}>") == replies.NESTED_MAIL


async def test_syntax_errors_and_unknown_commands(
    serve: Serve, connect: Callable[[int], Awaitable[Client]]
) -> None:
    client = await connect(await serve())

    ehlo = (await client.command("EHLO client.test")).split("\n")
    assert ehlo == [f"250-{HOSTNAME}", "250-SIZE 26214400", "250-8BITMIME", "250 HELP"]
    # no CHUNKING offered, and BDAT is not understood
    assert await client.command("BDAT 10 LAST") == replies.UNKNOWN_COMMAND.format(command="BDAT")
    assert await client.command("MAIL FROM:") == replies.MAIL_SYNTAX
    assert await client.command("MAIL FROM:<a@b@c>") == replies.MALFORMED_ADDRESS
    assert await client.command("MAIL FROM:<" + "a" * 600 + "@example.org>") == (
        replies.COMMAND_TOO_LONG
    )
    assert await client.command(f"MAIL FROM:<{SENDER}>") == replies.OK
    # an address aiosmtpd's parser fails on: a temporary failure, never its traceback
    assert await client.command("RCPT TO:<a@[b>") == replies.TEMPFAIL_LOCAL
    assert await client.command("RCPT TO:<broken@replies.test>") == replies.TEMPFAIL_LOCAL
    assert await client.command(f"RCPT TO:<{REPLY}>") == replies.ACCEPTED_RCPT
    assert await client.command("DATA x") == replies.DATA_SYNTAX


async def test_a_message_line_past_the_limit_is_refused_and_ends_the_session(
    serve: Serve, store: StreamStore, connect: Callable[[int], Awaitable[Client]]
) -> None:
    client = await connect(await serve(line_length_limit=1500))
    await client.command("EHLO client.test")
    await client.command(f"MAIL FROM:<{SENDER}>")
    await client.command(f"RCPT TO:<{REPLY}>")
    assert await client.command("DATA") == replies.START_DATA

    # a line of the limit is read; one more byte is too many
    await client.send(b"Subject: long\r\n\r\n" + b"y" * 1500 + b"\r\n" + b"z" * 1501 + b"\r\n")

    assert await client.reply() == replies.LINE_TOO_LONG
    assert await client.hung_up()
    assert await store.messages() == []


async def test_commands_before_an_endless_line_are_answered_first(
    serve: Serve, connect: Callable[[int], Awaitable[Client]]
) -> None:
    client = await connect(await serve())

    pipelined = f"EHLO client.test\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<{REPLY}>\r\n"
    await client.send(pipelined.encode() + b"A" * 100_000)

    assert (await client.reply()).startswith(f"250-{HOSTNAME}")
    assert [await client.reply() for _ in range(3)] == [
        replies.OK,
        replies.ACCEPTED_RCPT,
        replies.LINE_TOO_LONG,
    ]
    assert await client.hung_up()


async def test_an_endless_line_through_tls_is_cut_off(
    serve: Serve, connect: Callable[[int], Awaitable[Client]], tmp_path: Path
) -> None:
    pki = make_pki(tmp_path)
    port = await serve(tls_cert=str(pki.good.cert), tls_key=str(pki.good.key), hostname="localhost")
    client = await Client.connect(port)
    await client.reply()
    await client.command("EHLO client.test")
    assert await client.command("STARTTLS") == replies.READY_FOR_TLS
    context = ssl.create_default_context(cafile=pki.ca_file)
    await client.writer.start_tls(context, server_hostname="localhost")
    assert (await client.command("EHLO client.test")).startswith("250-localhost")

    await client.send(b"A" * 100_000)

    assert await client.reply() == replies.LINE_TOO_LONG
    assert await client.hung_up()
    await client.close()


async def test_errors_slow_a_session_down_past_10_and_end_it_at_20(
    serve: Serve, connect: Callable[[int], Awaitable[Client]]
) -> None:
    client = await connect(await serve(error_sleep_time="0.1s"))
    # the server's own errors and the handler's count alike
    own = [
        (f"MAIL FROM:<{SENDER}>", replies.HELO_FIRST),
        ("XYZZY", replies.UNKNOWN_COMMAND.format(command="XYZZY")),
        ("EHLO client.test", None),
        (f"RCPT TO:<{REPLY}>", replies.NEED_MAIL),
        ("MAIL FROM:", replies.MAIL_SYNTAX),
        (f"MAIL FROM:<{SENDER}>", replies.OK),
    ]
    for command, expected in own:
        reply = await client.command(command)
        assert expected is None or reply == expected

    timings = []
    for _ in range(16):
        started = time.monotonic()
        assert await client.command("RCPT TO:<x@example.com>") == replies.REJECT_RELAY
        timings.append(time.monotonic() - started)

    assert await client.reply() == replies.TOO_MANY_ERRORS.format(hostname=HOSTNAME)
    assert await client.hung_up()
    # errors 1 to 4 above, then 5 to 20: the replies after the 10th wait
    assert max(timings[:6]) < 0.1 <= min(timings[6:])


async def test_a_message_taken_forgives_the_errors_before_it(
    serve: Serve, store: StreamStore, connect: Callable[[int], Awaitable[Client]]
) -> None:
    client = await connect(await serve(max_recipients=1, error_sleep_time="0s"))
    await client.command("EHLO client.test")
    await client.command(f"MAIL FROM:<{SENDER}>")
    for _ in range(15):
        assert await client.command("RCPT TO:<x@example.com>") == replies.REJECT_RELAY
    assert await client.command(f"RCPT TO:<{REPLY}>") == replies.ACCEPTED_RCPT
    # as Postfix, recipients past the limit are no error: the client sends them again later
    for _ in range(10):
        assert await client.command(f"RCPT TO:<{OTHER_REPLY}>") == replies.REJECT_TOO_MANY_RCPTS
    assert await client.command("DATA") == replies.START_DATA
    queued = await client.command("Subject: hi\r\n\r\nHello.\r\n.")
    assert queued.startswith(replies.QUEUED.format(id=""))

    await client.command(f"MAIL FROM:<{SENDER}>")
    for _ in range(19):
        assert await client.command("RCPT TO:<x@example.com>") == replies.REJECT_RELAY
    assert await client.command("QUIT") == replies.BYE
    assert len(await store.messages()) == 1


async def test_a_client_that_reads_nothing_is_dropped_after_the_last_reply(
    store: StreamStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(smtp_limits, "LAST_REPLY_GRACE", 0.3)
    settings = InboundSettings.model_validate({"listen": f"127.0.0.1:{free_port()}"})
    server = await start_server(settings, InboundHandler(policy, store, settings))
    loop = asyncio.get_running_loop()
    # a socket the loop does not read from: what the server sends waits in the kernels
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, settings.listen)
        while not server.sessions:
            await asyncio.sleep(0.01)
        [(transport, _)] = server.sessions.values()
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        # more replies than the kernels hold wait in the server; then a line ends the session
        rcpt = f"RCPT TO:<{REPLY}>\r\n"
        commands = f"EHLO client.test\r\nMAIL FROM:<{SENDER}>\r\n" + rcpt * 3000
        await loop.sock_sendall(sock, commands.encode() + b"A" * 10_000)
        async with asyncio.timeout(10):
            while not transport.is_closing():
                await asyncio.sleep(0.01)
        await asyncio.sleep(2 * smtp_limits.LAST_REPLY_GRACE)

        # by now the server has dropped the connection, and what it had not sent yet
        read = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), 5):
                read += chunk
    assert 0 < read.count(replies.ACCEPTED_RCPT.encode()) < 3000
    assert replies.LINE_TOO_LONG.encode() not in read
    server.close()
    await server.wait_closed()


async def test_too_many_unknown_commands_end_the_session(
    serve: Serve, connect: Callable[[int], Awaitable[Client]]
) -> None:
    client = await connect(await serve())

    for _ in range(4):
        assert await client.command("XYZZY") == replies.UNKNOWN_COMMAND.format(command="XYZZY")
    assert await client.command("XYZZY") == replies.TOO_MANY_UNKNOWN_COMMANDS
    assert await client.hung_up()


async def test_junk_commands_are_limited(
    serve: Serve, connect: Callable[[int], Awaitable[Client]]
) -> None:
    client = await connect(await serve())

    await client.send("NOOP\r\n" * 101)

    assert [await client.reply() for _ in range(100)] == [replies.OK] * 100
    assert await client.reply() == replies.TOO_MANY_COMMANDS.format(command="NOOP")
    assert await client.hung_up()


async def test_a_pipelined_session_with_the_null_sender(
    serve: Serve, store: StreamStore, connect: Callable[[int], Awaitable[Client]]
) -> None:
    client = await connect(await serve())

    await client.send(
        "HELO odd(helo);name\r\nMAIL FROM:<>\r\n"
        f"RCPT TO:<{REPLY}>\r\nRCPT TO:<x@example.com>\r\nRCPT TO:<{REPLY.upper()}>\r\nDATA\r\n"
    )
    answers = [await client.reply() for _ in range(6)]
    await client.send("Subject: bounce\r\n\r\n..a line starting with a dot\r\n.\r\n")
    queued = await client.reply()

    assert answers == [
        replies.HELLO.format(hostname=HOSTNAME),
        replies.OK,
        replies.ACCEPTED_RCPT,
        replies.REJECT_RELAY,
        # the same address again (case aside) is accepted once
        replies.ACCEPTED_RCPT,
        replies.START_DATA,
    ]
    [message] = await store.messages()
    assert queued == replies.QUEUED.format(id=message.id)
    assert (message.mail_from, message.rcpt_to, message.helo) == ("", (REPLY,), "odd(helo);name")
    assert message.data.startswith(b"Received: from odd?helo??name ([127.0.0.1])\r\n")
    assert f"\tby {HOSTNAME} with SMTP id {message.id}".encode() in message.data
    assert message.data.endswith(b"\r\n\r\n.a line starting with a dot\r\n")


async def test_an_idle_client_is_disconnected(
    serve: Serve, connect: Callable[[int], Awaitable[Client]]
) -> None:
    client = await connect(await serve(command_timeout="0.3s"))

    assert await client.reply() == replies.TIMEOUT.format(hostname=HOSTNAME)
    assert await client.hung_up(within=3)


async def test_a_client_that_reads_nothing_is_dropped_after_the_timeout(
    store: StreamStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(smtp_limits, "LAST_REPLY_GRACE", 0.3)
    settings = InboundSettings.model_validate(
        {"listen": f"127.0.0.1:{free_port()}", "command_timeout": "0.5s"}
    )
    server = await start_server(settings, InboundHandler(policy, store, settings))
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, settings.listen)
        while not server.sessions:
            await asyncio.sleep(0.01)
        [(transport, _)] = server.sessions.values()
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        # more replies than the kernels hold wait in the server; then the client says nothing
        rcpt = f"RCPT TO:<{REPLY}>\r\n"
        commands = f"EHLO client.test\r\nMAIL FROM:<{SENDER}>\r\n" + rcpt * 3000
        await loop.sock_sendall(sock, commands.encode())
        async with asyncio.timeout(10):
            while not transport.is_closing():
                await asyncio.sleep(0.01)
        await asyncio.sleep(2 * smtp_limits.LAST_REPLY_GRACE)

        # the close did not wait for the client to read: the replies still in the server
        # were dropped with the connection (without the drop they would all come now)
        read = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), 5):
                read += chunk
    assert read.count(b"\r\n") < 3000
    assert not read.endswith(replies.TIMEOUT.format(hostname=HOSTNAME).encode() + b"\r\n")
    server.close()
    await server.wait_closed()


async def test_connections_per_client_are_limited(
    serve: Serve, connect: Callable[[int], Awaitable[Client]]
) -> None:
    port = await serve(max_connections_per_client=2)
    first = await connect(port)
    await connect(port)

    refused = await Client.connect(port)
    assert await refused.reply() == replies.REJECT_TOO_MANY_CONNECTIONS.format(hostname=HOSTNAME)
    assert await refused.hung_up()
    await refused.close()

    assert await first.command("QUIT") == replies.BYE
    assert await first.hung_up()
    await connect(port)  # a place is free again: greeted


async def test_parallel_sessions_from_smtp_source(serve: Serve, store: StreamStore) -> None:
    port = await serve(max_connections_per_client=10)
    process = await asyncio.create_subprocess_exec(
        need_tool("smtp-source"),
        "-s", "8", "-m", "60", "-l", "2000", "-M", "client.test", "-f", SENDER, "-t", REPLY,
        f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 30)

    assert process.returncode == 0, output.decode()
    messages = await store.messages()
    assert len(messages) == 60
    assert len({m.id for m in messages}) == 60
    assert all(m.rcpt_to == (REPLY,) and m.helo == "client.test" for m in messages)


async def test_closing_the_server_ends_its_sessions(
    store: StreamStore, connect: Callable[[int], Awaitable[Client]]
) -> None:
    port = free_port()
    settings = InboundSettings.model_validate({"listen": f"127.0.0.1:{port}", "hostname": HOSTNAME})
    server = await start_server(settings, InboundHandler(policy, store, settings))
    client = await connect(port)

    server.close()
    await server.wait_closed()

    assert await client.hung_up()
    with pytest.raises(ConnectionRefusedError):
        await Client.connect(port)


def test_the_handler_shows_aiosmtpd_every_hook_it_has() -> None:
    # It names only its hooks to dir() (aiosmtpd's lookup, at every connection): a new hook
    # must be among them.
    handler = InboundHandler(policy, StreamStore(Redis()), InboundSettings())
    hooks = {name for name in vars(InboundHandler) if name.startswith("handle_")}
    assert set(dir(handler)) == hooks


# --- the trace header alone ---


def test_received_header_for_an_ipv6_client_and_several_recipients() -> None:
    header = received_header(
        helo="[IPv6:2001:db8::1]",
        peer="2001:db8::1",
        hostname=HOSTNAME,
        protocol="ESMTPS",
        message_id="abc",
        recipients=[REPLY, OTHER_REPLY],
        when=0.0,
    )

    assert header == (
        b"Received: from [IPv6:2001:db8::1] ([IPv6:2001:db8::1])\r\n"
        b"\tby mx.test with ESMTPS id abc;\r\n\tThu, 01 Jan 1970 00:00:00 +0000\r\n"
    )
