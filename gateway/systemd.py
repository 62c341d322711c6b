"""systemd's notify protocol (sd_notify): READY, RELOADING, STOPPING and STATUS."""

from __future__ import annotations

import os
import socket
import time


def notify(*states: str) -> bool:
    """Send states such as "READY=1" to systemd; does nothing when not run by it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall("\n".join(states).encode())
    return True


def monotonic_usec() -> str:
    """The MONOTONIC_USEC= field that Type=notify-reload wants alongside RELOADING=1."""
    return f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
