"""inbound.processes: the daemon's SMTP server in several processes, run as an administrator
runs it (real processes, a real Redis, real SMTP on loopback, signals).

Which process takes a connection is the kernel's choice; a test picks one by stopping the
others (SIGSTOP) until the connection has been accepted."""

from __future__ import annotations

import base64
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import ValidationError
from redis import Redis

from gateway.message_tokens import new_token
from gateway.reply_tokens import MessageReference, ReplyTarget, make_local_part
from gateway.settings import InboundSettings
from inbound import smtp_replies as replies
from inbound.client_connections import ConnectionSlots
from tests.conftest import need_tool
from tests.redis_server import free_port
from tests.test_daemon import ROOT, Daemon, start_daemon, wait_for, write_config

__all__ = ["start_daemon"]  # a fixture, used by name

HOSTNAME = "mx.test"
REFUSED = replies.REJECT_TOO_MANY_CONNECTIONS.format(hostname=HOSTNAME)
MESSAGE = "Subject: hello\r\n\r\nOne line.\r\n"


class Gateway:
    """A `mailgw run --role inbound` and what a test needs to know of it."""

    def __init__(self, daemon: Daemon, port: int, metrics_port: int, redis: Redis) -> None:
        self.daemon = daemon
        self.port = port
        self.metrics_port = metrics_port
        self.redis = redis

    @property
    def pid(self) -> int:
        return self.daemon.process.pid

    def children(self, count: int) -> dict[int, int]:
        """The pid of every child serving, by number, once `count` of them serve."""

        def serving() -> dict[int, int]:
            found = re.findall(r"SMTP process (\d+) \(pid (\d+)\) serving", self.daemon.output())
            pids = {int(number): int(pid) for number, pid in found}  # the last one of each
            return pids if len(pids) == count and all(map(alive, pids.values())) else {}

        pids: dict[int, int] = wait_for(serving, f"{count} SMTP processes")
        return pids

    def stored(self) -> int:
        return self.redis.xlen("mailgw:inbound")

    def metric(self, name: str, **labels: str) -> float:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        found = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", text, re.MULTILINE)
        return float(found[1]) if found else 0.0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def gateway(
    tmp_path: Path, redis_url: str, start_daemon: Callable[..., Daemon]
) -> Iterator[Callable[..., Gateway]]:
    """Starts `mailgw run --role inbound` with [inbound] keys set as keywords (and `tables`
    added to the file)."""
    redis = Redis.from_url(redis_url)

    def start(tables: str = "", **inbound: object) -> Gateway:
        config = write_config(tmp_path, redis_url)
        port = free_port()
        table = {"listen": f'"127.0.0.1:{port}"', "hostname": f'"{HOSTNAME}"'}
        keys = "".join(f"{key} = {value}\n" for key, value in (table | inbound).items())
        text = re.sub(r'\[inbound\]\nlisten = "[^"]+"\n', f"[inbound]\n{keys}", config.read_text())
        config.write_text(f"{text}\n{tables}")
        [metrics] = re.findall(r'\[metrics\]\nlisten = "127.0.0.1:(\d+)"', text)
        # the inbound role serves its metrics on metrics.listen's port + 2
        return Gateway(start_daemon(config, "--role", "inbound"), port, int(metrics) + 2, redis)

    yield start
    redis.close()


class Client:
    """A raw SMTP client on a blocking socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")

    def reply(self) -> str:
        while True:
            line = self.file.readline().decode()
            if line[3:4] != "-":
                return line.rstrip("\r\n")

    def command(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def send(self, recipient: str = "postmaster@localhost") -> str:
        """A whole message after the greeting; the reply to its data."""
        for line in ("EHLO client.test", "MAIL FROM:<zoe@example.org>", f"RCPT TO:<{recipient}>"):
            assert self.command(line).startswith("250"), line
        assert self.command("DATA").startswith("354")
        return self.command(MESSAGE + ".")

    def hung_up(self) -> bool:
        try:
            return self.file.readline() == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def accept_queue(port: int) -> int | None:
    """Connections waiting to be accepted on 127.0.0.1:`port` (/proc/net/tcp: a listening
    socket's rx_queue), or None when nothing listens there."""
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted and fields[3] == "0A":  # TCP_LISTEN
            return int(fields[4].split(":")[1], 16)
    return None


@contextmanager
def only(gateway: Gateway, pid: int, others: list[int]) -> Iterator[None]:
    """While in the block, only process `pid` of `others` may accept: the others are
    stopped until the connections made meanwhile have been accepted."""
    stopped = [p for p in others if p != pid]
    for other in stopped:
        os.kill(other, signal.SIGSTOP)
    try:
        yield
        wait_for(lambda: accept_queue(gateway.port) == 0, "the connections accepted")
    finally:
        for other in stopped:
            os.kill(other, signal.SIGCONT)


def connect_to(gateway: Gateway, pid: int, pids: list[int]) -> Client:
    with only(gateway, pid, pids):
        client = Client(gateway.port)
    return client


def test_the_connection_limit_holds_across_processes(gateway: Callable[..., Gateway]) -> None:
    smtp = gateway(processes=2, max_connections_per_client=2)
    [child] = smtp.children(1).values()
    pids = [smtp.pid, child]

    in_child = connect_to(smtp, child, pids)
    assert in_child.reply().startswith("220 mx.test ")
    in_daemon = connect_to(smtp, smtp.pid, pids)
    assert in_daemon.reply().startswith("220 mx.test ")
    for pid in pids:  # a third connection, wherever it goes, is one too many
        third = connect_to(smtp, pid, pids)
        assert third.reply() == REFUSED
        assert third.hung_up()

    # The child counts its session out before it answers QUIT: the client may connect again
    # at once, to the other process.
    assert in_child.command("QUIT") == replies.BYE
    again = connect_to(smtp, smtp.pid, pids)
    assert again.reply().startswith("220 ")
    assert in_daemon.command("QUIT") == replies.BYE
    again_in_child = connect_to(smtp, child, pids)
    assert again_in_child.reply().startswith("220 ")
    # A client that leaves without QUIT is counted out too.
    again.close()
    again_in_child.close()
    for pid in pids:
        client = connect_to(smtp, pid, pids)
        assert client.reply().startswith("220 "), pid


def test_mail_taken_by_every_process_reaches_the_stream(
    gateway: Callable[..., Gateway],
) -> None:
    smtp = gateway(processes=3, max_connections_per_client=20)
    children = smtp.children(2)
    pids = [smtp.pid, *children.values()]
    for pid in pids:
        client = connect_to(smtp, pid, pids)
        assert client.reply().startswith("220 ")
        assert client.send().startswith("250 2.0.0 Ok: queued as ")
        assert client.command("QUIT") == replies.BYE
    assert smtp.stored() == 3
    for number in children:
        assert re.search(
            rf"INFO inbound.smtp_server: queued .* smtp_process={number}\n", smtp.daemon.output()
        )

    # Many parallel clients, wherever the kernel sends them.
    result = subprocess.run(
        [need_tool("smtp-source"), "-s", "12", "-m", "300", "-M", "client.test",
         "-f", "zoe@example.org", "-t", "postmaster@localhost", f"127.0.0.1:{smtp.port}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert smtp.stored() == 303
    assert smtp.metric("mailgw_inbound_replies_total", stage="data", code="250") == 303
    assert smtp.metric("mailgw_inbound_replies_total", stage="connect", code="220") == 303


def test_a_child_that_dies_is_started_again(gateway: Callable[..., Gateway]) -> None:
    smtp = gateway(processes=2, max_connections_per_client=1)
    [child] = smtp.children(1).values()
    client = connect_to(smtp, child, [smtp.pid, child])
    assert client.reply().startswith("220 ")
    assert client.send().startswith("250 ")

    os.kill(child, signal.SIGKILL)
    assert client.hung_up()
    wait_for(
        lambda: f"SMTP process 2 (pid {child}) exited on signal 9" in smtp.daemon.output(),
        "the daemon to see it",
    )
    [new] = smtp.children(1).values()
    assert new != child
    # The dead child's connection is no longer counted.
    for pid in (new, smtp.pid):
        again = connect_to(smtp, pid, [smtp.pid, new])
        assert again.reply().startswith("220 "), pid
        assert again.send().startswith("250 ")
        assert again.command("QUIT") == replies.BYE
    assert smtp.stored() == 3
    # What the dead child counted stays counted.
    assert smtp.metric("mailgw_inbound_replies_total", stage="data", code="250") == 3
    assert smtp.daemon.stop() == 0


def sessions_in_both_processes(
    gateway: Callable[..., Gateway],
) -> tuple[Gateway, int, list[Client]]:
    """A gateway with two SMTP processes, its child's pid, and a session greeted in each."""
    smtp = gateway(processes=2)
    [child] = smtp.children(1).values()
    pids = [smtp.pid, child]
    clients = [connect_to(smtp, pid, pids) for pid in pids]
    for client in clients:
        assert client.reply().startswith("220 ")
        assert client.command("EHLO client.test").startswith("250")
    return smtp, child, clients


def test_a_warm_stop_lets_every_process_finish_its_sessions(
    gateway: Callable[..., Gateway],
) -> None:
    smtp, child, clients = sessions_in_both_processes(gateway)
    for client in clients:
        assert client.command("MAIL FROM:<zoe@example.org>").startswith("250")
        assert client.command("RCPT TO:<postmaster@localhost>").startswith("250")
        assert client.command("DATA").startswith("354")

    smtp.daemon.process.send_signal(signal.SIGTERM)
    # Nothing listens any more once every process has stopped listening...
    wait_for(lambda: accept_queue(smtp.port) is None, "the port closed")
    with pytest.raises(ConnectionRefusedError):
        Client(smtp.port)
    # ... but the sessions under way go on.
    for client in clients:
        assert client.command(MESSAGE + ".").startswith("250 2.0.0 Ok: queued as ")
        assert client.command("QUIT") == replies.BYE
    assert smtp.daemon.process.wait(30) == 0
    assert not alive(child)
    assert smtp.stored() == 2
    assert "SMTP process 2 stopped" in smtp.daemon.output()


def test_a_second_sigterm_ends_every_session_at_once(gateway: Callable[..., Gateway]) -> None:
    smtp, child, clients = sessions_in_both_processes(gateway)

    smtp.daemon.process.send_signal(signal.SIGTERM)
    wait_for(lambda: "SIGTERM: finishing" in smtp.daemon.output(), "the warm stop")
    smtp.daemon.process.send_signal(signal.SIGTERM)
    for client in clients:
        assert client.hung_up()
    assert smtp.daemon.process.wait(10) == 0
    assert not alive(child)


def test_a_reload_reaches_every_process(tmp_path: Path, gateway: Callable[..., Gateway]) -> None:
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    for path in (old, new):
        path.write_bytes(base64.b64encode(secrets.token_bytes(48)) + b"\n")
    tables = f'[reply_tokens]\nsecret_files = ["{old}"]\n'
    smtp = gateway(tables, processes=2)
    [child] = smtp.children(1).values()
    pids = [smtp.pid, child]
    expires = int(time.time()) + 86400
    reference = MessageReference(new_token(), expires)
    local = make_local_part(
        ReplyTarget("salon", "7", "42"), new.read_bytes().rstrip(), expires, reference=reference
    )

    def rcpt(pid: int) -> str:
        client = connect_to(smtp, pid, pids)
        assert client.reply().startswith("220 ")
        client.command("EHLO client.test")
        client.command("MAIL FROM:<zoe@example.org>")
        return client.command(f"RCPT TO:<{local}@localhost>")

    assert [rcpt(pid) for pid in pids] == [replies.REJECT_UNKNOWN_RCPT] * 2
    config = tmp_path / "mailgw.toml"
    config.write_text(config.read_text().replace(f'["{old}"]', f'["{new}", "{old}"]'))
    smtp.daemon.process.send_signal(signal.SIGHUP)
    smtp.daemon.expect("READY=1")
    wait_for(lambda: "SMTP process 2: configuration reloaded" in smtp.daemon.output(), "reload")
    assert [rcpt(pid) for pid in pids] == [replies.ACCEPTED_RCPT] * 2


def test_a_refused_reload_is_not_passed_on(tmp_path: Path, gateway: Callable[..., Gateway]) -> None:
    smtp = gateway(processes=2)
    smtp.children(1)
    config = tmp_path / "mailgw.toml"
    config.write_text(config.read_text() + "[queue]\nconcurrency = 0\n")
    smtp.daemon.process.send_signal(signal.SIGHUP)
    smtp.daemon.expect("READY=1")
    wait_for(lambda: "reload refused" in smtp.daemon.output(), "the refusal")
    time.sleep(0.5)
    assert "SMTP process 2: " not in smtp.daemon.output().split("reload refused")[1]


def test_a_client_that_leaves_frees_its_place_at_once(gateway: Callable[..., Gateway]) -> None:
    smtp = gateway(processes=2, max_connections_per_client=1)
    [child] = smtp.children(1).values()
    pids = [smtp.pid, child]

    def greeted() -> bool:
        client = Client(smtp.port)
        try:
            # its QUIT frees its place before it has the answer
            return client.reply().startswith("220 ") and client.command("QUIT") == replies.BYE
        finally:
            client.close()

    # Gone before its greeting: while the daemon's counts are stopped, the child waits.
    for _ in range(5):
        with only(smtp, child, pids):
            Client(smtp.port).close()
    wait_for(greeted, "a place")
    # Half-closed after its greeting: aiosmtpd would keep the connection, and its place,
    # until the session timeout.
    for pid in pids:
        client = connect_to(smtp, pid, pids)
        assert client.reply().startswith("220 ")
        client.sock.shutdown(socket.SHUT_WR)
        assert client.hung_up()
        wait_for(greeted, "a place", timeout=5)


def test_one_process_starts_no_child(gateway: Callable[..., Gateway]) -> None:
    smtp = gateway(processes=1)
    client = Client(smtp.port)
    assert client.reply().startswith("220 ")
    assert "SMTP process" not in smtp.daemon.output()
    assert "(1 process(es))" in smtp.daemon.output()


# --- the counts alone ---


HOLDER = """
import sys
from inbound.client_connections import ConnectionSlots
slots = ConnectionSlots(int(sys.argv[2]), int(sys.argv[1]))
for client in sys.argv[3:]:
    assert slots.open(client) is None, client
print("holding", flush=True)
sys.stdin.read()  # until told to let go
for client in sys.argv[3:]:
    slots.close(client)
print("let go", flush=True)
sys.stdin.read()
"""


@contextmanager
def another_process(fd: int, limit: int, *clients: str) -> Iterator[subprocess.Popen[str]]:
    """A process holding one connection of each of `clients` in the file `fd`."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(fd), str(limit), *clients],
        pass_fds=(fd,), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "holding\n"
        yield process
    finally:
        process.kill()
        process.wait()


def test_slots_are_counted_across_processes_and_freed_by_exit() -> None:
    fd = ConnectionSlots.new_file()
    try:
        here = ConnectionSlots(3, fd)
        with another_process(fd, 3, "192.0.2.1", "192.0.2.1", "2001:db8::1") as other:
            assert here.open("192.0.2.1") is None
            assert here.open("192.0.2.1") == 3
            assert [here.open("2001:db8::1"), here.open("2001:db8::1")] == [None, None]
            assert here.open("2001:db8::1") == 3
            assert here.open("192.0.2.2") is None  # another client: its own slots
            here.close("192.0.2.1")
            assert here.open("192.0.2.1") is None
            assert other.stdin is not None and other.stdout is not None
            other.stdin.close()  # it closes its connections
            assert other.stdout.readline() == "let go\n"
            assert here.open("192.0.2.1") is None
            assert here.open("2001:db8::1") is None
            assert here.open("2001:db8::1") == 3
        # killed with connections open: the kernel lets go of them
        with another_process(fd, 3, "192.0.2.9", "192.0.2.9", "192.0.2.9"):
            assert here.open("192.0.2.9") == 3
        assert here.open("192.0.2.9") is None
    finally:
        os.close(fd)


def test_slots_of_one_process_alone() -> None:
    slots = ConnectionSlots(2)
    assert [slots.open("192.0.2.1") for _ in range(3)] == [None, None, 2]
    slots.close("192.0.2.1")
    assert slots.open("192.0.2.1") is None
    slots.close("192.0.2.1")
    slots.close("192.0.2.1")
    assert slots.held == {}


def test_processes_is_auto_or_a_positive_number() -> None:
    assert InboundSettings().processes == "auto"
    assert InboundSettings.model_validate({"processes": 3}).process_count() == 3
    for wrong in (0, -1, "2", "all", 1.5, True):
        with pytest.raises(ValidationError, match='must be "auto" or a whole number greater'):
            InboundSettings.model_validate({"processes": wrong})
