"""Member data at rest (invariant 8) and secrets that are never stored.

- Phone numbers are encrypted with AES-256-GCM and found through an HMAC-SHA256
  keyed hash; both keys derive (HKDF) from one 32-byte master key kept in a file
  outside the database, so a copied database alone reveals no contacts.
- Member passwords and staff PINs are stored only as scrypt hashes (memory-hard).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core import keyfiles
from core.errors import ConfigError
from core.passwords import hash_secret, verify_secret  # noqa: F401  (edge's name for them)

KEY_BYTES = 32


def create_key_file(path: Path) -> bool:
    """Create the master key if absent (mode 0600). True if a key was created."""
    return keyfiles.create_key_file(path, KEY_BYTES)


# a blob: BLOB_MAGIC + the key id (4 bytes) + nonce (12) + AES-GCM ciphertext and tag. Blobs
# written before schema 3 are nonce + ciphertext (the key implied); they still decrypt.
BLOB_MAGIC = b"\xa7K"
_ID_BYTES = 4
_HEAD = len(BLOB_MAGIC) + _ID_BYTES


def master_key_id(master: bytes) -> str:
    """A public name for a member key (8 hex digits), written into every blob it encrypts."""
    return hashlib.sha256(b"huiyuan member key id\x00" + master).hexdigest()[: 2 * _ID_BYTES]


@dataclass(frozen=True, eq=False)
class MemberKeys:
    """The store's member key, and the others it met during a rotation (edge/key_rotation.py),
    by key id: a blob names the key it was written with, so old and new both decrypt."""

    enc_key: bytes
    mac_key: bytes
    key_id: str = ""
    source: Path | None = None  # the key file, read again when a blob names an unknown key
    known: dict[str, MemberKeys] = field(default_factory=dict)

    @classmethod
    def from_master(cls, master: bytes, source: Path | None = None) -> MemberKeys:
        if len(master) != KEY_BYTES:
            raise ConfigError(f"member key must be {KEY_BYTES} bytes, got {len(master)}")

        def derive(label: bytes) -> bytes:
            return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(master)

        return cls(
            derive(b"huiyuan member field encryption v1"),
            derive(b"huiyuan member lookup hash v1"),
            master_key_id(master),
            source,
        )

    @classmethod
    def load(cls, path: Path) -> MemberKeys:
        try:
            return cls.from_master(Path(path).read_bytes(), Path(path))
        except FileNotFoundError:
            raise ConfigError(
                f"member key file not found: {path} (run `huiyuan-edge init`)"
            ) from None

    def lookup_hash(self, value: str) -> str:
        return hmac.new(self.mac_key, value.encode(), hashlib.sha256).hexdigest()

    def learn(self, other: MemberKeys) -> None:
        if other.key_id != self.key_id:
            self.known[other.key_id] = other

    def find(self, key_id: str) -> MemberKeys | None:
        """The key named ``key_id``: this one, one met before, or the key file as it is now
        (after a rotation it holds the new key)."""
        if key_id == self.key_id:
            return self
        if key_id not in self.known and self.source is not None and self.source.exists():
            self.learn(MemberKeys.from_master(self.source.read_bytes(), self.source))
        return self.known.get(key_id)

    def encrypt(self, plaintext: str, context: str) -> bytes:
        nonce = os.urandom(12)
        sealed = AESGCM(self.enc_key).encrypt(nonce, plaintext.encode(), context.encode())
        return BLOB_MAGIC + bytes.fromhex(self.key_id) + nonce + sealed

    def decrypt(self, blob: bytes, context: str) -> str:
        blob = bytes(blob)
        key_id = blob_key_id(blob)
        if key_id is not None:
            keys = self.find(key_id)
            if keys is None:
                from edge.key_rotation import learn_next_key  # the new key, wrapped in the db

                keys = learn_next_key(self, key_id)
            if keys is not None:
                return keys._open(blob[_HEAD:], context)
        return self._open(blob, context)

    def _open(self, sealed: bytes, context: str) -> str:
        try:
            return AESGCM(self.enc_key).decrypt(sealed[:12], sealed[12:], context.encode()).decode()
        except InvalidTag:
            raise ConfigError(
                "member field does not decrypt: wrong key file for this database"
            ) from None


def blob_key_id(blob: bytes) -> str | None:
    """The key id a blob names, or None for a blob from before schema 3."""
    if len(blob) > _HEAD + 12 and blob[: len(BLOB_MAGIC)] == BLOB_MAGIC:
        return blob[len(BLOB_MAGIC) : _HEAD].hex()
    return None
