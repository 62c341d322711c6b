"""Hostile SMTP sessions against the limits of a real `mailgw run --role inbound`, in the
daemon's process and in another SMTP process: the reply, the cut-off, what the client could
send, the time taken, and the resident memory of the process that served them (/proc/PID).

Each hostile session comes twice in each process, and a normal message is served in that
process before and after each."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from inbound import smtp_replies as replies
from tests.test_inbound_processes import (
    HOSTNAME,
    Client,
    Gateway,
    connect_to,
    gateway,
    only,
    start_daemon,
)

__all__ = ["gateway", "start_daemon"]  # fixtures, used by name

MESSAGE_SIZE = 10 * 2**20
ERROR_SLEEP = 0.05
COMMAND_TIMEOUT = 2.0
QUEUED = replies.QUEUED.format(id="")
TIMEOUT = replies.TIMEOUT.format(hostname=HOSTNAME)
# What a process may keep after a hostile session (kB): a little of what any session uses
# stays with Python's and the C library's allocators; what a session read does not.
KEPT = 3_000
# What a client may send beyond what the server reads before it hangs up: what the kernels
# hold between the two on loopback, the client's send buffer being kept small.
IN_FLIGHT = 2**20


@dataclass
class Memory:
    """A process's resident memory (kB) before a session, at its peak during it, after it."""

    before: int
    during: int
    after: int


def status(pid: int, field: str) -> int:
    """A field of /proc/PID/status, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


class Hostile(Client):
    """A raw client that can send more than the server wants to read, and keeps the replies
    it reads."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        # what it has sent is then little more than what the server read
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        self.answers: list[str] = []

    def flood(self, data: bytes, total: int) -> int:
        """Sends `data` again and again, `total` bytes at most, until the server answers,
        closes the connection or stops reading for 5 s; returns the bytes sent."""
        sent = 0
        self.sock.settimeout(5)
        while sent < total and not select.select([self.sock], [], [], 0)[0]:
            try:
                sent += self.sock.send(data[: total - sent])
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
        return sent

    def rest(self, within: float = 5) -> bool:
        """Reads the replies left until the server closes the connection (True), or for
        `within` seconds (False)."""
        self.sock.settimeout(within)
        try:
            while line := self.file.readline():
                self.answers.append(line.decode().rstrip("\r\n"))
        except ConnectionResetError:
            pass
        except TimeoutError:
            return False
        return True


@dataclass
class Outcome:
    """What a hostile client saw, and what the process serving it did meanwhile."""

    pid: int
    replies: list[str]
    sent: int
    seconds: float
    closed: bool
    memory: Memory

    def __str__(self) -> str:
        m = self.memory
        return (
            f"pid {self.pid}: {self.replies[-1:]} after {self.sent} bytes sent, in "
            f"{self.seconds:.3f}s, closed={self.closed}; RSS (kB) before {m.before}, "
            f"peak {m.during} (+{m.during - m.before}), after {m.after} "
            f"(+{m.after - m.before})"
        )


@dataclass
class Served:
    """A gateway with two SMTP processes: the daemon's and one other."""

    smtp: Gateway
    pids: list[int]

    def sessions(self, hostile: Callable[[Hostile], int]) -> list[Outcome]:
        """`hostile` (which returns the bytes it sent) twice in each process, each between
        two normal messages in that process."""
        outcomes = [self.session(pid, hostile) for _ in range(2) for pid in self.pids]
        for outcome in outcomes:
            print(outcome)
        return outcomes

    def session(self, pid: int, hostile: Callable[[Hostile], int]) -> Outcome:
        self.message(pid)
        before = status(pid, "VmRSS")
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM: the peak from now on
        with only(self.smtp, pid, self.pids):
            client = Hostile(self.smtp.port)
        assert client.reply().startswith("220 ")
        started = time.monotonic()
        sent = hostile(client)
        closed = client.rest()
        seconds = time.monotonic() - started
        during = status(pid, "VmHWM")
        client.close()
        self.message(pid)
        memory = Memory(before, during, status(pid, "VmRSS"))
        return Outcome(pid, client.answers, sent, seconds, closed, memory)

    def message(self, pid: int) -> None:
        client = connect_to(self.smtp, pid, self.pids)
        assert client.reply().startswith("220 ")
        assert client.send().startswith(QUEUED)
        assert client.command("QUIT") == replies.BYE
        client.close()


def two_processes(gateway: Callable[..., Gateway], **inbound: object) -> Served:
    smtp = gateway(processes=2, **inbound)
    [child] = smtp.children(1).values()
    return Served(smtp, [smtp.pid, child])


@pytest.fixture
def served(gateway: Callable[..., Gateway]) -> Iterator[Served]:
    yield two_processes(
        gateway, max_message_size=MESSAGE_SIZE, error_sleep_time=f'"{ERROR_SLEEP}s"'
    )


def ehlo(client: Hostile) -> None:
    assert client.command("EHLO client.test").startswith("250")


def test_an_endless_line_is_refused_and_cut_off(served: Served) -> None:
    def endless_line(client: Hostile) -> int:
        ehlo(client)
        return client.flood(b"A" * 65536, 20 * 2**20)

    for outcome in served.sessions(endless_line):
        assert outcome.replies == [replies.LINE_TOO_LONG], outcome
        assert outcome.closed, outcome
        assert outcome.sent < IN_FLIGHT, outcome
        assert outcome.seconds < 2, outcome
        assert outcome.memory.after - outcome.memory.before < KEPT, outcome


def test_a_session_is_cut_off_after_too_many_errors(served: Served) -> None:
    rcpt = b"RCPT TO:<victim@example.com>\r\n"

    def refused_recipients(client: Hostile) -> int:
        ehlo(client)
        assert client.command("MAIL FROM:<zoe@example.org>") == replies.OK
        sent = 0
        for _ in range(6666):
            client.sock.sendall(rcpt)
            sent += len(rcpt)
            client.answers.append(client.reply())
            if client.answers[-1] != replies.REJECT_RELAY:
                break
        return sent

    hang_up = replies.TOO_MANY_ERRORS.format(hostname=HOSTNAME)
    for outcome in served.sessions(refused_recipients):
        assert outcome.replies == [replies.REJECT_RELAY] * 20 + [hang_up], outcome
        assert outcome.closed, outcome
        # past the soft limit, each reply waits: 10 of them here
        assert 10 * ERROR_SLEEP <= outcome.seconds < 2, outcome
        assert outcome.memory.after - outcome.memory.before < KEPT, outcome


def test_an_idle_client_is_disconnected_at_the_command_timeout(
    gateway: Callable[..., Gateway],
) -> None:
    served = two_processes(gateway, command_timeout=f'"{COMMAND_TIMEOUT}s"')

    def idle(client: Hostile) -> int:
        ehlo(client)
        return len("EHLO client.test\r\n")

    for pid in served.pids:
        outcome = served.session(pid, idle)
        print(outcome)
        assert outcome.replies == [TIMEOUT] and outcome.closed, outcome
        assert COMMAND_TIMEOUT <= outcome.seconds < COMMAND_TIMEOUT + 1, outcome


def test_an_oversized_message_is_cut_off_while_it_is_read(served: Served) -> None:
    lines = (b"x" * 998 + b"\r\n") * 64

    def oversized(client: Hostile) -> int:
        ehlo(client)
        assert client.command("MAIL FROM:<zoe@example.org>") == replies.OK
        assert client.command("RCPT TO:<postmaster@localhost>").startswith("250")
        assert client.command("DATA") == replies.START_DATA
        return client.flood(lines, 100 * 2**20)

    for outcome in served.sessions(oversized):
        assert outcome.replies == [replies.MESSAGE_TOO_BIG], outcome
        assert outcome.closed, outcome
        assert outcome.sent < MESSAGE_SIZE + IN_FLIGHT, outcome
        assert outcome.seconds < 2, outcome
        # the message up to the limit was in memory, and no more
        assert outcome.memory.during - outcome.memory.before < 2 * MESSAGE_SIZE // 1024
        assert outcome.memory.after - outcome.memory.before < KEPT, outcome


def test_a_message_of_empty_lines_takes_the_memory_of_its_size(served: Served) -> None:
    size = 2**20

    def empty_lines(client: Hostile) -> int:
        ehlo(client)
        assert client.command("MAIL FROM:<zoe@example.org>") == replies.OK
        assert client.command("RCPT TO:<postmaster@localhost>").startswith("250")
        assert client.command("DATA") == replies.START_DATA
        client.sock.sendall(b"\r\n" * (size // 2) + b".\r\n")
        client.answers.append(client.reply())
        assert client.command("QUIT") == replies.BYE
        return size

    for outcome in served.sessions(empty_lines):
        assert outcome.replies[0].startswith(QUEUED), outcome
        # Storing a message takes some 9 times its size at the peak (its copies, the
        # Base64 of the Redis entry); a list of its lines would add some 70 bytes for
        # each of these lines of two: 35 times its size.
        assert outcome.memory.during - outcome.memory.before < 16 * size // 1024, outcome
        assert outcome.memory.after - outcome.memory.before < KEPT, outcome
