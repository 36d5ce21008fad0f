"""Key files both sides make the same way: random bytes, mode 0600, never overwritten."""

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
