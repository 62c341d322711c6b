"""A real Kannel for tests: bearerbox, smsbox and Kannel's fakesmsc as the SMSC, on loopback."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar
from urllib.parse import quote_from_bytes, unquote_to_bytes

from tests.conftest import missing_tool, need_tool
from tests.redis_server import free_port

# Kannel's test SMSC client, from the Debian package kannel-extras (not on PATH)
FAKESMSC = Path("/usr/lib/kannel/test/fakesmsc")

_T = TypeVar("_T")

# Seconds a test waits for Kannel to pass a text or a callback on
WAIT = 5


@dataclass(frozen=True)
class Sms:
    """A text as the fake SMSC saw it, its parts joined."""

    sender: str
    receiver: str
    text: str
    parts: int = 1


def _parse(line: str) -> tuple[Sms, bytes]:
    """One message of fakesmsc's output ("<sender> <receiver> <type> <data>"), and its UDH."""
    sender, receiver, kind, data = line.split(" ", 3)
    if kind == "text":
        return Sms(sender, receiver, data), b""
    if kind == "ucs-2":
        return Sms(sender, receiver, _unquote(data).decode("utf-16-be")), b""
    if kind == "udh":
        udh, _, payload = data.partition(" data ")
        # Kannel keeps 7-bit text as UTF-8 until the SMSC driver: the fake one gets that
        return Sms(sender, receiver, _unquote(payload).decode()), _unquote(udh)
    if kind == "data":
        return Sms(sender, receiver, _unquote(data).decode()), b""
    raise ValueError(f"unexpected fakesmsc line: {line!r}")


def _unquote(data: str) -> bytes:
    # Kannel's URL encoding writes spaces as +, and + as %2B
    return unquote_to_bytes(data.replace("+", " "))


class FakeSmsc:
    """Kannel's fakesmsc in interactive mode: it logs each text bearerbox hands it, and
    sends each line written to its standard input to bearerbox as a text from a phone."""

    def __init__(self, port: int, log: Path) -> None:
        self.process = subprocess.Popen(
            [FAKESMSC, "-H", "127.0.0.1", "-r", str(port), "-i", "0", "-v", "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.received: list[Sms] = []
        self.sent = 0
        self._parts: dict[tuple[str, int], dict[int, Sms]] = {}
        self._log = log
        self._lock = threading.Lock()
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,))
        self._reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        with self._log.open("ab") as log:
            for raw in stream:
                log.write(raw)
                line = raw.decode(errors="replace").rstrip("\n")
                if found := re.search(r"Got message \d+: <(.*)>$", line):
                    self._receive(*_parse(found[1]))
                elif re.search(r"fakesmsc: sent message \d+$", line):
                    with self._lock:
                        self.sent += 1

    def _receive(self, sms: Sms, udh: bytes) -> None:
        # a concatenated text: information element 0 is (reference, total, sequence)
        if len(udh) >= 6 and udh[1] == 0:
            reference, total, sequence = udh[3], udh[4], udh[5]
            parts = self._parts.setdefault((sms.receiver, reference), {})
            parts[sequence] = sms
            if len(parts) < total:
                return
            del self._parts[(sms.receiver, reference)]
            text = "".join(parts[n].text for n in sorted(parts))
            sms = Sms(sms.sender, sms.receiver, text, total)
        with self._lock:
            self.received.append(sms)

    async def text_to(self, receiver: str) -> Sms:
        """The first text the SMSC got for `receiver`."""
        return await eventually(
            lambda: next((s for s in list(self.received) if s.receiver == receiver), None),
            f"no text for {receiver} reached the fake SMSC (see its fakesmsc.log)",
        )

    async def send(self, sender: str, receiver: str, text: str) -> None:
        """A text from a phone; UCS-2 unless it is ASCII. Written one at a time: fakesmsc
        reads its input through stdio, which would hold back a second line read with the
        first until more input comes."""
        coded = (
            f"text {text}"
            if text.isascii()
            else f"ucs2 {quote_from_bytes(text.encode('utf-16-be'))}"
        )
        assert self.process.stdin is not None
        before = self.sent
        self.process.stdin.write(f"{sender} {receiver} {coded}\n".encode())
        self.process.stdin.flush()
        await eventually(lambda: self.sent > before or None, "fakesmsc did not send the text")

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        _stop(self.process)
        self._reader.join(5)


async def eventually(probe: Callable[[], _T | None], failure: str) -> _T:
    """What `probe` returns once it returns something, polled for up to WAIT seconds."""
    try:
        async with asyncio.timeout(WAIT):
            while (value := probe()) is None:
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(failure) from None
    return value


@dataclass
class Kannel:
    """A running bearerbox and smsbox, and the fake SMSC connected to them."""

    directory: Path
    admin_port: int
    sendsms_port: int
    smsc: FakeSmsc
    boxes: list[subprocess.Popen[bytes]]

    @property
    def sendsms_url(self) -> str:
        return f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms"

    def logs(self) -> str:
        return _logs(self.directory)

    def stop(self) -> None:
        _stop_all(self.boxes, self.smsc)


def _status(admin_port: int) -> str:
    """bearerbox's status page, or "" while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/status.txt", timeout=1) as page:
            return str(page.read().decode())
    except OSError:
        return ""


def _logs(directory: Path) -> str:
    """The end of each log, for failure messages."""
    return "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
        for log in sorted(directory.glob("*.log"))
    )


def _stop_all(boxes: list[subprocess.Popen[bytes]], smsc: FakeSmsc | None) -> None:
    # smsbox first, and the SMSC link: bearerbox waits for them before it exits
    for box in boxes[1:]:
        _stop(box)
    if smsc is not None:
        smsc.stop()
    for box in boxes[:1]:
        _stop(box)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


BOXES = ("bearerbox", "smsbox")

CORE = """\
group = core
admin-port = {admin}
admin-interface = 127.0.0.1
admin-password = "test"
smsbox-port = {smsbox}
smsbox-interface = 127.0.0.1
box-allow-ip = 127.0.0.1
log-file = "{directory}/bearerbox.log"
log-level = 0
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = fake
port = {fake}
our-host = 127.0.0.1
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
sendsms-port = {sendsms}
sendsms-interface = 127.0.0.1
log-file = "{directory}/smsbox.log"
log-level = 0

"""


def start_kannel(directory: Path, groups: str) -> Kannel:
    """bearerbox, fakesmsc and smsbox on free loopback ports, once each answers; `groups`
    are the sendsms-user and sms-service groups under test."""
    bearerbox, smsbox = need_tool("bearerbox"), need_tool("smsbox")
    if not FAKESMSC.is_file():
        missing_tool(f"Kannel's {FAKESMSC} is not installed (Debian: kannel-extras)")
    admin, fake, sendsms = free_port(), free_port(), free_port()
    config = directory / "kannel.conf"
    config.write_text(
        CORE.format(
            admin=admin, smsbox=free_port(), fake=fake, sendsms=sendsms, directory=directory
        )
        + groups
    )
    boxes: list[subprocess.Popen[bytes]] = []
    smsc: FakeSmsc | None = None

    def start(binary: str) -> None:
        with (directory / f"{Path(binary).name}.out.log").open("wb") as out:
            # -v 2: their own log files have everything, the console only warnings
            boxes.append(
                subprocess.Popen([binary, "-v", "2", config], stdout=out, stderr=subprocess.STDOUT)
            )

    def wait(ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 15
        while not ready():
            dead = [name for name, box in zip(BOXES, boxes, strict=False) if box.poll() is not None]
            if dead or time.monotonic() > deadline:
                _stop_all(boxes, smsc)
                reason = f"{dead} exited" if dead else "timed out"
                raise RuntimeError(f"Kannel: waiting for {what}: {reason}\n{_logs(directory)}")
            time.sleep(0.05)

    start(bearerbox)
    wait(lambda: "Status: running" in _status(admin), "bearerbox's admin page")
    smsc = FakeSmsc(fake, directory / "fakesmsc.log")
    wait(lambda: "FAKE:" in (page := _status(admin)) and "(online" in page, "the fake SMSC")
    start(smsbox)
    wait(lambda: "smsbox:(none), IP 127.0.0.1" in _status(admin) and _accepts(sendsms), "smsbox")
    return Kannel(directory, admin, sendsms, smsc, boxes)
