"""Identifiers minted anywhere, offline: UUIDv7 (time-ordered, RFC 9562)."""

from __future__ import annotations

import os
import threading
import time
import uuid

_MS_MASK = (1 << 48) - 1
_RAND_B_MASK = (1 << 62) - 1
_POOL_BYTES = 4096  # 409 ids per getrandom call


class _RandomPool:
    """Bytes from the operating system's CSPRNG, fetched a page at a time.

    A checkout mints two ids; one getrandom call each cost more than the rest of the id
    (docs/benchmarks.md, till). The bytes are the same os.urandom bytes, never reused: a
    lock hands each slice out once, and a forked child drops the parent's pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buf = b""
        self._pos = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._buf, self._pos = b"", 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._pos + n > len(self._buf):
                self._buf, self._pos = os.urandom(max(_POOL_BYTES, n)), 0
            out = self._buf[self._pos : self._pos + n]
            self._pos += n
            return out


_pool = _RandomPool()


def uuid7(now_ms: int | None = None) -> str:
    """A UUIDv7 string: 48-bit Unix milliseconds, then 74 random bits."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else int(now_ms)
    rand = int.from_bytes(_pool.take(10), "big")
    value = (
        (ms & _MS_MASK) << 80
        | 0x7 << 76  # version
        | ((rand >> 62) & 0xFFF) << 64  # rand_a
        | 0b10 << 62  # variant
        | rand & _RAND_B_MASK  # rand_b
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_uuid(text: object) -> bool:
    if not isinstance(text, str) or len(text) != 36:
        return False
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
