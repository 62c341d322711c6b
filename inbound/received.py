"""A message the inbound SMTP server accepted, as it is queued in Redis for routing."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """What the SMTP session said about one message, and its bytes as received (with
    the server's own Received header on top)."""

    id: str
    peer: str
    helo: str
    # The envelope sender; "" for the null sender <> of bounces and reports.
    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes
    received_at: float
    tls: bool
