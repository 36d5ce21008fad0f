"""The member's own link: a signed, expiring token naming one member (docs/member-page.md).

The receipt's QR code reads ``https://<hq>/m/<token>``. The till signs the member id and an
expiry instant; HQ checks the signature and the expiry before it shows anything.

Key: the *link key* is derived from the chain lookup key (core.phone) with HMAC-SHA256 under
a fixed label, so every store that holds the lookup key (it arrives in the header of the
snapshot the store asked for, on its own topic) can sign, HQ can verify, and nothing new goes
down the wire. The token names the link key by a 4-byte id, so a link signed with a key HQ no
longer holds (after a lookup key rotation) is refused as out of date, never mistaken.

Token bytes, base64url without padding (55 characters for a UUID member id):

    version (1) | key id (4) | expires, unix seconds (4, big-endian) | member id | mac (16)

member id: 16 bytes when the id is a canonical UUID (version 1), else (version 2) one length
byte and the UTF-8 id (at most 64 bytes). mac: HMAC-SHA256 under the link key of everything
before it, truncated to 128 bits.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import struct
import uuid
from dataclasses import dataclass

from core.errors import ValidationError

LINK_KEY_LABEL = b"huiyuan member-link v1"
LINK_DAYS = 30  # how long a printed link opens the page
MAC_BYTES = 16
MAX_TOKEN_CHARS = 200
_UUID, _TEXT = 1, 2


class LinkRefused(ValidationError):
    """The link was edited, is not a link, was signed with another key, or has expired.
    ``reason``: malformed | signature | key | expired (for logs and tests; the member sees
    one Chinese page whatever it is, so an edited link learns nothing)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"链接无效或已过期 (member link refused: {reason})", field="token")
        self.reason = reason


def link_key(lookup_key: bytes) -> bytes:
    """The key a till signs member links with, derived from the chain lookup key."""
    return hmac.digest(lookup_key, LINK_KEY_LABEL, "sha256")


def link_key_id(key: bytes) -> bytes:
    """A public 4-byte name for a link key (not the key)."""
    return hashlib.sha256(b"huiyuan member-link key id\x00" + key).digest()[:4]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _member_bytes(member_id: str) -> bytes:
    try:
        as_uuid = uuid.UUID(member_id)
    except ValueError:
        as_uuid = None
    if as_uuid is not None and str(as_uuid) == member_id:
        return bytes([_UUID]) + as_uuid.bytes
    raw = member_id.encode("utf-8")
    if not raw or len(raw) > 64:
        raise ValidationError("member id must be 1..64 bytes", field="member_id")
    return bytes([_TEXT, len(raw)]) + raw


def sign_link(key: bytes, member_id: str, expires_at: dt.datetime) -> str:
    """The token for ``member_id``, valid until ``expires_at`` (an aware or naive-UTC instant)."""
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=dt.UTC)
    member = _member_bytes(member_id)
    body = member[:1] + link_key_id(key) + struct.pack(">I", int(expires_at.timestamp()))
    body += member[1:]
    return _b64(body + hmac.digest(key, body, "sha256")[:MAC_BYTES])


def link_expiry(now: dt.datetime, days: int = LINK_DAYS) -> dt.datetime:
    return now + dt.timedelta(days=days)


@dataclass(frozen=True, slots=True)
class MemberLink:
    member_id: str
    expires_at: dt.datetime  # aware, UTC


def verify_link(key: bytes, token: str, now: dt.datetime) -> MemberLink:
    """The member a token names, if HQ signed it with ``key`` and it has not expired at
    ``now``; else ``LinkRefused``. The signature is checked before anything in the token
    is believed."""
    if not isinstance(token, str) or not 8 <= len(token) <= MAX_TOKEN_CHARS:
        raise LinkRefused("malformed")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise LinkRefused("malformed") from None
    if _b64(raw) != token or len(raw) < 1 + 4 + 4 + 2 + MAC_BYTES:
        raise LinkRefused("malformed")  # one spelling per token: no padding tricks
    body, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if body[1:5] != link_key_id(key):
        raise LinkRefused("key")
    if not hmac.compare_digest(mac, hmac.digest(key, body, "sha256")[:MAC_BYTES]):
        raise LinkRefused("signature")
    version, (expires,), rest = body[0], struct.unpack(">I", body[5:9]), body[9:]
    if version == _UUID and len(rest) == 16:
        member_id = str(uuid.UUID(bytes=rest))
    elif version == _TEXT and rest and rest[0] == len(rest) - 1:
        member_id = rest[1:].decode("utf-8", "replace")
    else:
        raise LinkRefused("malformed")
    expires_at = dt.datetime.fromtimestamp(expires, dt.UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    if now >= expires_at:
        raise LinkRefused("expired")
    return MemberLink(member_id, expires_at)
