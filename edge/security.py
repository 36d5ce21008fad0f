"""Member data at rest (invariant 8) and secrets that are never stored.

- Phone numbers are encrypted with AES-256-GCM and found through an HMAC-SHA256
  keyed hash; both keys derive (HKDF) from one 32-byte master key kept in a file
  outside the database, so a copied database alone reveals no contacts.
- Member passwords and staff PINs are stored only as scrypt hashes (memory-hard).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.errors import ConfigError
from core.protocol import SCRYPT_N, SCRYPT_P, SCRYPT_R

KEY_BYTES = 32


def create_key_file(path: Path) -> bool:
    """Create the master key if absent (mode 0600). True if a key was created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(os.urandom(KEY_BYTES))
        fh.flush()
        os.fsync(fh.fileno())
    return True


@dataclass(frozen=True)
class MemberKeys:
    enc_key: bytes
    mac_key: bytes

    @classmethod
    def from_master(cls, master: bytes) -> MemberKeys:
        if len(master) != KEY_BYTES:
            raise ConfigError(f"member key must be {KEY_BYTES} bytes, got {len(master)}")

        def derive(label: bytes) -> bytes:
            return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(master)

        return cls(
            derive(b"huiyuan member field encryption v1"), derive(b"huiyuan member lookup hash v1")
        )

    @classmethod
    def load(cls, path: Path) -> MemberKeys:
        try:
            return cls.from_master(Path(path).read_bytes())
        except FileNotFoundError:
            raise ConfigError(
                f"member key file not found: {path} (run `huiyuan-edge init`)"
            ) from None

    def lookup_hash(self, value: str) -> str:
        return hmac.new(self.mac_key, value.encode(), hashlib.sha256).hexdigest()

    def encrypt(self, plaintext: str, context: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + AESGCM(self.enc_key).encrypt(nonce, plaintext.encode(), context.encode())

    def decrypt(self, blob: bytes, context: str) -> str:
        try:
            return (
                AESGCM(self.enc_key)
                .decrypt(bytes(blob[:12]), bytes(blob[12:]), context.encode())
                .decode()
            )
        except InvalidTag:
            raise ConfigError(
                "member field does not decrypt: wrong key file for this database"
            ) from None


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
