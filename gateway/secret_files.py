"""Writing a generated key file once: private, whole, and the same for every process."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def create_private_file(path: Path, data: bytes) -> bool:
    """Write `data` to `path` (mode 0600, missing folders 0700) unless it exists; True if
    this call wrote it, False if another process created it first. Raises OSError."""
    _make_private_dirs(path.parent)
    # written aside (mkstemp: mode 0600) then linked into place: readers never see half a
    # key, and of two processes generating at once the first wins, the other reads it
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
    finally:
        temporary.unlink(missing_ok=True)
    return True


def _make_private_dirs(directory: Path) -> None:
    # Path.mkdir(parents=True) gives the parents it creates the default mode, not 0700
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
