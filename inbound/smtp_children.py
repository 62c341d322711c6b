"""The processes serving SMTP beside the daemon's own server: started, restarted, stopped.

Why processes: aiosmtpd's per-session work is Python on one core; a process per core
spreads it (inbound.processes). All of them accept on the daemon's listening sockets, which
each child inherits: the kernel hands a new connection to whichever process asks first, so a
busy process leaves it to an idle one, a process being restarted leaves nothing waiting,
and the port stays the daemon's alone (no SO_REUSEPORT that another program could join).
They share the daemon's file of connection slots (inbound/client_connections.py), so that
inbound.max_connections_per_client holds across them, and write their metrics where the
daemon's endpoint reads them (gateway/metrics.py). Each has a channel to the daemon, a Unix
socket pair: it says when it serves; it sees the daemon go. Only the daemon talks to systemd.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from gateway import metrics

log = logging.getLogger(__name__)

# Where a child finds Redis (the daemon's [redis] url, or its embedded server's socket).
REDIS_URL_VARIABLE = "MAILGW_REDIS_URL"

# How long start() waits for the children to say they serve.
READY_TIMEOUT = 30.0
# A child that ran this long is restarted at once (after RESTART_DELAY); one that died
# sooner waits twice as long as the last time, up to MAX_RESTART_DELAY.
STEADY_RUN = 10.0
RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 60.0
# After a cold stop, how long a child may take to end its sessions before it is killed.
KILL_AFTER = 5.0
# What systemd gives the daemon alone (Type=notify, NotifyAccess=main).
_DAEMON_ONLY = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


@dataclass
class _Child:
    number: int
    process: subprocess.Popen[bytes]
    pidfd: int
    started: float
    ready: asyncio.Future[None]
    channel: socket.socket
    terminated: int = 0
    exited: asyncio.Event = field(default_factory=asyncio.Event)


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class SmtpChildren:
    """`count` processes serving SMTP on the `listening` socket descriptors, counting
    connections in the file `slots` (ConnectionSlots.new_file())."""

    def __init__(
        self,
        count: int,
        listening: list[int],
        slots: int,
        config_path: Path | None,
        redis_url: str,
    ) -> None:
        self.listening = listening
        self.slots = slots
        self.config_path = config_path
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="mailgw-smtp-metrics-"))
        metrics.add_process_files(self.metrics_dir)
        self.environment = {k: v for k, v in os.environ.items() if k not in _DAEMON_ONLY} | {
            REDIS_URL_VARIABLE: redis_url,
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
        }
        self.stopping = False
        self.children: dict[int, _Child] = {}
        self.delays = dict.fromkeys(range(2, count + 2), RESTART_DELAY)
        self.restarts: dict[int, asyncio.TimerHandle] = {}

    async def start(self) -> None:
        """Start every child; until each serves, has exited, or READY_TIMEOUT has passed."""
        for number in self.delays:
            self._start(number)
        waiting = [c.ready for c in self.children.values()]
        if not waiting:  # none could be started: see the log
            return
        _, late = await asyncio.wait(waiting, timeout=READY_TIMEOUT)
        if late:
            log.warning("%d SMTP process(es) not serving after %gs", len(late), READY_TIMEOUT)

    def _start(self, number: int) -> None:
        self.restarts.pop(number, None)
        if self.stopping:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        command = [sys.executable, "-m", "gateway.commands.smtp_child"]
        if self.config_path is not None:
            command += ["--config", str(self.config_path)]
        command += [
            "--listen", ",".join(map(str, self.listening)),
            "--slots", str(self.slots),
            "--channel", str(theirs.fileno()),
            "--number", str(number),
        ]  # fmt: skip
        try:
            with theirs:
                process = subprocess.Popen(
                    command,
                    pass_fds=(*self.listening, self.slots, theirs.fileno()),
                    env=self.environment,
                    # its own process group: a Ctrl-C meant for the daemon is the daemon's
                    # to pass on, as a warm stop
                    start_new_session=True,
                )
        except OSError as exc:
            ours.close()
            log.error("cannot start SMTP process %d: %s", number, exc)
            self._restart_later(number, time.monotonic())
            return
        loop = asyncio.get_running_loop()
        ours.setblocking(False)
        pidfd = os.pidfd_open(process.pid)
        child = _Child(number, process, pidfd, time.monotonic(), loop.create_future(), ours)
        self.children[number] = child
        loop.add_reader(child.pidfd, self._exited, child)
        loop.add_reader(ours.fileno(), self._heard, child)
        log.info("started SMTP process %d (pid %d)", number, process.pid)

    def _heard(self, child: _Child) -> None:
        """The child says it serves, or its end of the channel has closed."""
        try:
            said = child.channel.recv(64)
        except OSError:
            said = b""
        if said:
            _set(child.ready)
        else:
            self._hang_up(child)

    def _hang_up(self, child: _Child) -> None:
        if child.channel.fileno() != -1:
            asyncio.get_running_loop().remove_reader(child.channel.fileno())
            child.channel.close()

    def _exited(self, child: _Child) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(child.pidfd)
        os.close(child.pidfd)
        status = child.process.wait()
        self._hang_up(child)
        del self.children[child.number]
        child.exited.set()
        _set(child.ready)
        if self.stopping:
            log.info("SMTP process %d (pid %d) stopped", child.number, child.process.pid)
            return
        how = f"with status {status}" if status >= 0 else f"on signal {-status}"
        log.error("SMTP process %d (pid %d) exited %s", child.number, child.process.pid, how)
        self._restart_later(child.number, child.started)

    def _restart_later(self, number: int, started: float) -> None:
        if time.monotonic() - started >= STEADY_RUN:
            self.delays[number] = RESTART_DELAY
        else:
            self.delays[number] = min(max(1.0, self.delays[number] * 2), MAX_RESTART_DELAY)
        delay = self.delays[number]
        log.info("starting SMTP process %d again in %gs", number, delay)
        self.restarts[number] = asyncio.get_running_loop().call_later(delay, self._start, number)

    def _signal(self, child: _Child, signum: signal.Signals) -> None:
        if child.process.returncode is None:
            child.terminated += signum == signal.SIGTERM
            child.process.send_signal(signum)

    def reload(self) -> None:
        """Have every child read the configuration again."""
        for child in self.children.values():
            self._signal(child, signal.SIGHUP)

    def stop(self) -> None:
        """Warm stop: no restarts; every child finishes its sessions and exits."""
        self.stopping = True
        for handle in self.restarts.values():
            handle.cancel()
        self.restarts.clear()
        for child in self.children.values():
            self._signal(child, signal.SIGTERM)

    async def finished(self) -> None:
        """Until every child has exited (after stop())."""
        for child in list(self.children.values()):
            await child.exited.wait()

    async def close(self) -> None:
        """Cold stop: every child ends its sessions now, or is killed after KILL_AFTER."""
        if not self.stopping:
            self.stop()
        for child in self.children.values():
            if child.terminated < 2:  # a second SIGTERM: now
                self._signal(child, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.finished(), KILL_AFTER)
        except TimeoutError:
            for child in self.children.values():
                log.error("SMTP process %d did not stop; killing it", child.number)
                child.process.kill()
            await self.finished()
        metrics.remove_process_files(self.metrics_dir)
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
