"""The maildir transport: each message is written into a Maildir instead of being sent."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import socket
import time
from pathlib import Path

from outbound.relay import OutgoingMessage, RecipientResult, in_order, split_invalid

_counter = itertools.count()


def envelope_mark(envelope: OutgoingMessage) -> str:
    """What names an envelope's file (its sender is unique per message): `has()` finds it."""
    digest = hashlib.sha256(f"{envelope.sender}\0{envelope.recipients}".encode()).hexdigest()
    return f"S{digest[:20]}"


def unique_name(mark: str = "") -> str:
    """A Maildir file name no other delivery uses: time, microseconds, pid, counter,
    the envelope's mark, host."""
    now = time.time()
    # "/" and ":" cannot appear in the host part (the Maildir spec's escapes)
    host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
    unique = f"M{int(now % 1 * 1_000_000)}P{os.getpid()}Q{next(_counter)}{mark}"
    return f"{int(now)}.{unique}.{host}"


def write_maildir(maildir: Path, data: bytes, mark: str = "") -> Path:
    """Write `data` into tmp/, flush it to disk, then move it to new/; its final path."""
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    name = unique_name(mark)
    temporary = maildir / "tmp" / name
    # O_EXCL: a name that somehow exists already is an error, never an overwrite
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        final = maildir / "new" / name
        # readers only look in new/ and cur/, so they never see a partly written message
        os.rename(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return final


def with_delivery_headers(envelope: OutgoingMessage) -> bytes:
    """The message with Return-Path and Delivered-To on top, as a local delivery writes them.

    Headers added on top leave a DKIM signature valid; the lines stay CRLF as signed.
    """
    lines = [f"Return-Path: <{envelope.sender}>\r\n".encode()]
    lines += [f"Delivered-To: {r}\r\n".encode() for r in envelope.recipients]
    return b"".join(lines) + envelope.message


def _holds(maildir: Path, mark: str) -> bool:
    for sub in ("new", "cur"):
        try:
            with os.scandir(maildir / sub) as files:
                if any(mark in file.name for file in files):
                    return True
        except FileNotFoundError:
            continue
    return False


class MaildirTransport:
    """Writes every envelope into one Maildir; all its recipients share the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def deliver(self, envelope: OutgoingMessage) -> list[RecipientResult]:
        """Write the message; sent (250) once it is in new/, deferred if the write failed."""
        results, valid = split_invalid(envelope)
        if valid is None:
            return results
        try:
            # fsync may take a while: off the event loop
            final = await asyncio.to_thread(
                write_maildir, self.path, with_delivery_headers(valid), envelope_mark(envelope)
            )
        except OSError as exc:
            reason = f"cannot write to the maildir {self.path}: {exc}"
            done = [RecipientResult(r, "deferred", 0, reason, None) for r in valid.recipients]
        else:
            reason = f"written to {final}"
            done = [RecipientResult(r, "sent", 250, reason, None) for r in valid.recipients]
        return in_order(envelope, results + done)

    async def has(self, envelope: OutgoingMessage) -> bool:
        """Whether a file of this envelope is in new/ or cur/ (a reader may have moved it)."""
        return await asyncio.to_thread(_holds, self.path, f"{envelope_mark(envelope)}.")

    async def close(self) -> None:
        """Nothing stays open between deliveries."""
