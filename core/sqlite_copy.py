"""A consistent copy of a live SQLite database, the one way both sides take it.

SQLite's online backup API copies what the WAL holds too, while other processes keep
writing; copying the file alone would miss it. The copy is written beside ``out`` with
mode 0600 (it holds what the database holds) and renamed into place, so ``out`` is never
half a file. Standard library only, like core/keyfiles.py.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


def copy_sqlite(source: Path, out: Path) -> int:
    """Copy the database at ``source`` to ``out``; returns the copy's size in bytes."""
    out = Path(out).resolve()
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    live = sqlite3.connect(f"file:{Path(source).resolve()}?mode=ro", uri=True)
    copy = sqlite3.connect(partial)
    try:
        live.backup(copy)
    finally:
        copy.close()
        live.close()
    os.replace(partial, out)
    return out.stat().st_size
