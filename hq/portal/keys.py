"""The member page's keys, each derived from the chain lookup key under its own label, so
HQ needs no new secret file and a lookup key rotation rotates them all (docs/member-page.md).

- link key (core.member_link.link_key): the till signs the receipt's link with it; stores
  derive it the same way from the lookup key they hold.
- session key: signs the cookie that says this browser bound this member's phone (HQ only).
- code key: verification codes are kept as HMACs under it (HQ only).
- csrf key: signs the bind form's token against the browser's CSRF cookie (HQ only).
"""

from __future__ import annotations

import functools
import hmac
from typing import Any

from core.member_link import link_key


class PortalKeys:
    def __init__(self, lookup: Any) -> None:
        self.lookup = lookup  # hq.lookup.ChainLookup; its key is read on first use

    def _derive(self, label: str) -> bytes:
        return hmac.digest(self.lookup.key, f"huiyuan member-page {label} v1".encode(), "sha256")

    @functools.cached_property
    def link(self) -> bytes:
        return link_key(self.lookup.key)

    @functools.cached_property
    def session(self) -> bytes:
        return self._derive("session")

    @functools.cached_property
    def code(self) -> bytes:
        return self._derive("code")

    @functools.cached_property
    def csrf(self) -> bytes:
        return self._derive("csrf")

    @functools.cached_property
    def unsubscribe(self) -> bytes:
        """Signs the 退订 links of campaign messages: a key of their own, so that such a
        token (open for ``links.UNSUBSCRIBE_DAYS``) opens the unsubscribe page and never
        the member's page."""
        return self._derive("unsubscribe")

    def phone_hash(self, phone: str) -> str:
        """The lookup hash of a normalised phone, as HQ sends stores (hq/lookup.py)."""
        return self.lookup.hasher(phone)

    def mac(self, key: bytes, *parts: str) -> str:
        return hmac.digest(key, "\x00".join(parts).encode("utf-8"), "sha256").hex()
