"""Key files both sides make the same way: random bytes, mode 0600, never overwritten;
and secrets or certificates replaced atomically (``write_atomically``)."""

from __future__ import annotations

import os
from pathlib import Path


def create_key_file(path: Path, size: int = 32) -> bool:
    """Create ``path`` holding ``size`` random bytes (mode 0600) if it is absent; True if it
    was created. An existing file is kept as it is: a key made again would orphan what the
    old one protects."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(os.urandom(size))
        fh.flush()
        os.fsync(fh.fileno())
    return True


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """``data`` to a temporary file beside ``path`` (created with ``mode``, synced), then
    renamed over it: readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)  # an old temporary file keeps its mode through O_CREAT
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
