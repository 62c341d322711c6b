"""systemd's notify protocol (sd_notify): READY, RELOADING, STOPPING, STATUS and WATCHDOG."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


def notify(*states: str) -> bool:
    """Send states such as "READY=1" to systemd; does nothing when not run by it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode())
    except OSError as exc:
        # As sd_notify(3): the service must not fail because its manager cannot be told.
        log.warning("cannot notify systemd at %s: %s", os.environ["NOTIFY_SOCKET"], exc)
        return False
    return True


def monotonic_usec() -> str:
    """The MONOTONIC_USEC= field that Type=notify-reload wants alongside RELOADING=1."""
    return f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"


def watchdog_interval() -> float | None:
    """Seconds between two WATCHDOG=1 pings (half of $WATCHDOG_USEC, as sd_watchdog_enabled(3)
    advises), or None when systemd expects none from this process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not os.environ.get("NOTIFY_SOCKET") or not usec.isdigit() or int(usec) == 0:
        return None
    # The variables are inherited by children, which are not the process systemd watches.
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2_000_000


async def ping_watchdog() -> None:
    """Ping systemd's watchdog from the event loop until cancelled: a loop that hangs stops
    pinging, and systemd (WatchdogSec=) kills and restarts the daemon."""
    interval = watchdog_interval()
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)


async def report_status(status: Callable[[], Awaitable[str]], every: float) -> None:
    """Send STATUS= with the text `status` makes, now and every `every` seconds, until
    cancelled; shown by `systemctl status`."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    while True:
        notify(f"STATUS={await status()}")
        await asyncio.sleep(every)
