"""glibc's malloc told to give large freed blocks back to the system at once."""

from __future__ import annotations

import ctypes

# mallopt()'s parameter (<malloc.h>), and glibc's own starting value for it: a block of
# this size or more is mapped on its own, and unmapped when it is freed.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024


def give_back_large_blocks() -> None:
    """Keep glibc's mmap threshold where it starts (nothing where the C library has no
    mallopt()).

    Left alone, glibc raises the threshold to the size of the largest block freed, up to
    32 MiB: after one session has read a message of some megabytes into its buffer, the
    next one's buffer of that size comes from the heap, which keeps it once freed. A
    process serving SMTP would then hold, for good, the most a session ever made it read.
    Set once, the threshold no longer moves.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
