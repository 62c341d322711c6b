"""A process serving SMTP beside the daemon's own server (inbound.processes), which starts it.

    python -m gateway.commands.smtp_child [--config FILE] --listen FD[,FD...] --slots FD
                                 --channel FD --number N

It accepts on the daemon's listening sockets (inherited descriptors), counts connections in
the daemon's file of slots (inbound/client_connections.py), checks recipients and stores
messages as the daemon's own server does, in the Redis that $MAILGW_REDIS_URL names. It says
"ready" on the channel (a Unix socket) once it serves, and stops when the daemon's end
closes. It reads
the configuration file at start and again on SIGHUP (which the daemon passes on once it has
taken a new configuration). SIGTERM stops it warmly: no new connections, the open sessions
finish, for up to queue.shutdown_grace; a second SIGTERM, or the daemon going away, ends
them at once. Its metrics go to prometheus_client's files in $PROMETHEUS_MULTIPROC_DIR, which
the daemon's endpoint adds to its own. Exit status 2: its configuration was refused.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from gateway import logs
from gateway.clock import SystemClock
from gateway.config import Config, load_config
from gateway.directory import AccountDirectory
from gateway.errors import ConfigError
from gateway.keys import Keys
from gateway.redis_conn import connect
from gateway.reply_tokens import reply_secrets
from gateway.settings import Settings
from inbound.client_connections import ConnectionSlots
from inbound.policy import RecipientCheck
from inbound.queue import InboundQueue
from inbound.smtp_children import REDIS_URL_VARIABLE
from inbound.smtp_server import InboundHandler, InboundServer, settle_for_sessions, tls_context

# by name: run with -m, the module is __main__
log = logging.getLogger("gateway.commands.smtp_child")

# Redis connections: one per session storing a message or resolving a recipient at once.
REDIS_CONNECTIONS = 64


class SmtpChild:
    """The SMTP server of one such process, from start to exit."""

    def __init__(self, config: Config, number: int) -> None:
        self.config = config
        self.number = number
        self.clock = SystemClock()
        self.stopping = False
        self.done = asyncio.Event()
        self.server: InboundServer | None = None

    def settings(self) -> Settings:
        return self.config.settings

    async def serve(
        self, listening: list[int], slots_file: int, channel: int, redis_url: str
    ) -> int:
        settings = self.config.settings
        redis = connect(redis_url, REDIS_CONNECTIONS)
        keys = Keys(settings.redis.prefix)
        self.directory = AccountDirectory.cached_as(
            settings.accounts, redis, keys, self.config.accounts, self.clock.now
        )
        self.secrets = reply_secrets(settings)
        check = RecipientCheck(
            redis, keys, self.directory, self.settings, lambda: self.secrets, self.clock
        )
        # aiosmtpd logs every command at INFO: addresses are not for the journal.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        handler = InboundHandler(
            check, InboundQueue(redis, keys).store, settings.inbound, self.clock
        )
        slots = ConnectionSlots(settings.inbound.max_connections_per_client, slots_file)
        self.server = InboundServer(settings.inbound, handler, tls_context(settings.inbound), slots)
        loop = asyncio.get_running_loop()
        daemon = socket.socket(fileno=channel)
        daemon.setblocking(False)
        try:
            await self.server.start([socket.socket(fileno=fd) for fd in listening])
            loop.add_signal_handler(signal.SIGTERM, self.stop)
            loop.add_signal_handler(signal.SIGHUP, self.reload)
            loop.add_reader(daemon.fileno(), self._daemon_gone, daemon)
            settle_for_sessions()
            daemon.send(b"ready\n")
            log.info("SMTP process %d (pid %d) serving", self.number, os.getpid())
            await self.done.wait()
            self.server.stop()
            grace = settings.queue.shutdown_grace.total_seconds()
            try:
                await asyncio.wait_for(self.server.finished(), grace)
            except TimeoutError:
                log.warning("SMTP process %d: sessions still open after %gs", self.number, grace)
        finally:
            self.server.close()
            await self.server.wait_closed()
            await redis.aclose()
        log.info("SMTP process %d stopped", self.number)
        return 0

    def stop(self) -> None:
        """First time: finish the open sessions; second time: end them now."""
        if self.stopping:
            assert self.server is not None
            self.server.close()
        self.stopping = True
        self.done.set()

    def _daemon_gone(self, channel: socket.socket) -> None:
        # the daemon says nothing more: readable means its end has closed
        asyncio.get_running_loop().remove_reader(channel.fileno())
        channel.close()
        if not self.stopping:
            log.error("SMTP process %d: the daemon has gone; stopping", self.number)
            self.stop()

    def reload(self) -> None:
        try:
            new = load_config(self.config.path)
            secrets = reply_secrets(new.settings)
        except ConfigError as exc:
            log.error(
                "SMTP process %d: reload refused, the configuration in force is kept:\n%s",
                self.number,
                "\n".join(str(p) for p in exc.problems),
            )
            return
        self.config = new
        self.secrets = secrets
        self.directory.replace_files(new.accounts)
        logging.getLogger().setLevel(new.settings.log.level.upper())
        log.info("SMTP process %d: configuration reloaded", self.number)


class _Numbered(logging.Filter):
    """Marks this process's log lines: `smtp_process=N` (see gateway/logs.py)."""

    def __init__(self, number: int) -> None:
        super().__init__()
        self.number = number

    def filter(self, record: logging.LogRecord) -> bool:
        record.smtp_process = self.number
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.commands.smtp_child")
    parser.add_argument("--config", type=Path, help="the daemon's file (default: none)")
    parser.add_argument("--listen", required=True, help="listening sockets' descriptors")
    parser.add_argument("--slots", type=int, required=True, help="the connections' file")
    parser.add_argument("--channel", type=int, required=True, help="the daemon's channel")
    parser.add_argument("--number", type=int, required=True, help="this process's number")
    args = parser.parse_args(argv)
    logs.setup()
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Numbered(args.number))
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("%s", problem)
        return 2
    logging.getLogger().setLevel(config.settings.log.level.upper())
    listening = [int(fd) for fd in args.listen.split(",")]
    child = SmtpChild(config, args.number)
    with asyncio.Runner() as runner:
        try:
            redis_url = os.environ[REDIS_URL_VARIABLE]
            return runner.run(child.serve(listening, args.slots, args.channel, redis_url))
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("%s", problem)
            return 2


if __name__ == "__main__":
    sys.exit(main())
