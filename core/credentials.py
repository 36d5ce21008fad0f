"""Secrets handed over by systemd (``LoadCredential=NAME:FILE``), found the one way both
sides find them: ``$CREDENTIALS_DIRECTORY/NAME`` when systemd put that file there.
Standard library only, like core/keyfiles.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def credential_path(name: str, environ: Mapping[str, str] | None = None) -> str:
    """``$CREDENTIALS_DIRECTORY/<name>`` if systemd handed that credential over, else ""."""
    directory = (os.environ if environ is None else environ).get("CREDENTIALS_DIRECTORY", "")
    if not directory:
        return ""
    path = os.path.join(directory, name)
    return path if os.path.isfile(path) else ""


def read_credential(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The text of credential ``name`` (one line; the trailing newline dropped), or ""."""
    path = credential_path(name, environ)
    if not path:
        return ""
    with open(path, encoding="utf-8") as fh:
        return fh.read().strip()
