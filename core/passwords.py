"""Secrets that are never stored, only their scrypt hashes (memory-hard): member
passwords and staff PINs at the till, HQ staff passwords at HQ.

A hash reads ``scrypt$N$r$p$salt$digest`` (base64 salt and digest). The verifier is given
the N it accepts, so the cost of a check is never the hash's author's choice.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from core.protocol import SCRYPT_N, SCRYPT_P, SCRYPT_R


def _scrypt(secret: str, salt: bytes, n: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        secret.encode(),
        salt=salt,
        n=n,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=256 * 1024 * 1024,
        dklen=dklen,
    )


def hash_secret(secret: str, n: int = SCRYPT_N) -> str:
    """An scrypt hash of ``secret``: the chain's parameters (core.protocol) for member
    passwords, which travel to every store; staff PINs, which never leave the store, use
    the store's ``security.scrypt_n``."""
    salt = os.urandom(16)
    digest = _scrypt(secret, salt, n, 32)
    b64 = base64.b64encode
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_secret(secret: str, stored: str | None, n: int = SCRYPT_N) -> bool:
    """Whether ``secret`` hashes to ``stored``. A hash with other parameters than
    (``n``, SCRYPT_R, SCRYPT_P) is False without computing it: its cost would be the
    sender's choice (issue 9, defect 7)."""
    if not stored:
        return False
    try:
        scheme, n_text, r, p, salt, digest = stored.split("$")
        if (scheme, n_text, r, p) != ("scrypt", str(n), str(SCRYPT_R), str(SCRYPT_P)):
            return False
        expected = base64.b64decode(digest)
        if not 16 <= len(expected) <= 64:
            return False
        actual = _scrypt(secret, base64.b64decode(salt), n, len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)
