"""Each client's open SMTP connections, counted once for all the processes serving SMTP.

Every process serving SMTP holds a lock (fcntl's POSIX record lock) on one byte of a file
they share, the daemon's memfd, for each connection it let in: client C's connections are
the bytes [base(C), base(C) + limit) of it, and a new connection takes a byte that no
process holds. So:

- the limit holds across processes, exactly: taking a byte is atomic in the kernel, and no
  two processes hold the same one;
- nobody waits or asks anyone: a process takes a byte with F_SETLK, which never blocks
  (about 2 us; a client at its limit costs a try per byte);
- a process that dies, however it dies, lets go of its bytes: the kernel drops its locks.

base(C) comes from a hash of C's address: two clients share bytes only if 62 bits of their
hashes meet. A process never conflicts with its own locks, hence its own count of the
bytes it holds. With one process serving SMTP there is no file: the count is that one.
"""

from __future__ import annotations

import fcntl
import hashlib
import os

# Offsets of the locked bytes stay below 2**62 (off_t is signed, 64 bits).
_SPACE = 2**62


class ConnectionSlots:
    """This process's side of the counts: `limit` connections per client, shared through
    the file `fd` (see new_file()) or, when None, in this process alone."""

    def __init__(self, limit: int, fd: int | None = None) -> None:
        self.limit = limit
        self.fd = fd
        # each process tries its own byte first: they would all compete for the same ones
        self.first = os.getpid() % limit
        # the bytes this process holds, by client
        self.held: dict[str, set[int]] = {}

    @staticmethod
    def new_file() -> int:
        """A file for the processes to share (to pass on to them; never closed while any
        of them serves: closing it lets go of every lock this process holds)."""
        return os.memfd_create("mailgw-smtp-connections")

    def open(self, client: str) -> int | None:
        """Let `client` (an IP address) have one more connection: None if it may, and it is
        counted until close(); else how many it has open already (the limit)."""
        held = self.held.setdefault(client, set())
        base = 0 if self.fd is None else _base(client, self.limit)
        for offset in range(self.limit):
            slot = base + (self.first + offset) % self.limit
            if slot in held:
                continue
            if self.fd is not None:
                try:
                    fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, slot)
                except OSError:  # another process holds it
                    continue
            held.add(slot)
            return None
        if not held:
            del self.held[client]
        return self.limit

    def close(self, client: str) -> None:
        """One of `client`'s connections let in by this process has ended."""
        held = self.held[client]
        slot = held.pop()
        if not held:
            del self.held[client]
        if self.fd is not None:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, slot)


def _base(client: str, limit: int) -> int:
    digest = hashlib.blake2b(client.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (_SPACE // limit) * limit
