"""A scriptable SMSC on loopback (tests/verifiers/smsc.pl, on Perl's Net::SMPP) for SMPP tests."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.conftest import missing_tool, need_tool
from tests.redis_server import free_port

SCRIPT = Path(__file__).resolve().parent / "verifiers" / "smsc.pl"
SYSTEM_ID = "mailgw"
PASSWORD = "s3cret"


class Smsc:
    """The running SMSC: what it received, as JSON events, and control over its answers."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.unread: list[dict[str, Any]] = []

    async def event(self, kind: str, within: float = 5.0) -> dict[str, Any]:
        """The oldest event of `kind` not returned yet, waiting for it at most `within` s."""
        for event in self.unread:
            if event["event"] == kind:
                self.unread.remove(event)
                return event
        async with asyncio.timeout(within):
            while True:
                event = await self._read()
                if event["event"] == kind:
                    return event
                self.unread.append(event)

    async def events(self, kind: str, count: int) -> list[dict[str, Any]]:
        return [await self.event(kind) for _ in range(count)]

    async def no_event(self, kind: str, within: float) -> None:
        """Fails if an event of `kind` comes within `within` seconds."""
        try:
            event = await self.event(kind, within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected event: {event}")

    async def control(self, command: str, **arguments: Any) -> None:
        """Applies a control command (see smsc.pl) and waits until the SMSC has."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"command": command, **arguments}).encode() + b"\n")
        await self.process.stdin.drain()
        assert (await self.event("control"))["command"] == command

    async def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the SMSC exited with status {await self.process.wait()}")
        event: dict[str, Any] = json.loads(line)
        return event


def need_net_smpp() -> str:
    """perl, with Net::SMPP; the test skips (fails in CI) without them."""
    perl = need_tool("perl")
    if subprocess.run([perl, "-MNet::SMPP", "-e1"], capture_output=True).returncode:
        missing_tool("Perl's Net::SMPP is not installed (Debian: libnet-smpp-perl)")
    return perl


@asynccontextmanager
async def running_smsc(system_id: str = SYSTEM_ID, password: str = PASSWORD) -> AsyncIterator[Smsc]:
    """smsc.pl on a free loopback port, until the block ends (closing its stdin stops it)."""
    perl = need_net_smpp()
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        perl, str(SCRIPT), "--port", str(port), "--system-id", system_id, "--password", password,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    smsc = Smsc(process, port)
    try:
        await smsc.event("ready", within=15)
        yield smsc
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            async with asyncio.timeout(5):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


@asynccontextmanager
async def tls_front(smsc: Smsc, context: ssl.SSLContext) -> AsyncIterator[int]:
    """A TLS endpoint (its port) relaying each connection to the SMSC, as stunnel would."""

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", smsc.port)
        await asyncio.gather(
            pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True
        )

    server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=context)
    async with server:
        yield server.sockets[0].getsockname()[1]
