"""Links to the member's page that HQ itself signs, for the messages it sends (campaign
texts: ``{link}`` and the ``退订`` line), with the same link key a till signs the receipt's
link with (hq/portal/keys.py, core.member_link). ``config.member_page_url`` is the page's
public address, ``{token}`` standing for the signed token.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from core.member_link import link_expiry, sign_link
from hq.lookup import chain_lookup
from hq.portal.keys import PortalKeys

UNSUBSCRIBE = "/unsubscribe"


@functools.lru_cache(maxsize=4)
def _link_key(config: Any) -> bytes:
    # the key file is read once per configuration, not once per message of a campaign
    return PortalKeys(chain_lookup(config)).link


def page_url(config: Any, member_id: str, now: dt.datetime) -> str:
    """The member page's address for ``member_id``, open for ``core.member_link.LINK_DAYS``
    from ``now`` (naive UTC)."""
    token = sign_link(_link_key(config), member_id, link_expiry(now))
    return config.member_page_url.replace("{token}", token)


def unsubscribe_url(config: Any, member_id: str, now: dt.datetime) -> str:
    """The unsubscribe page's address for ``member_id`` (the member page's, plus
    ``/unsubscribe``), open as long as ``page_url``'s."""
    base, _, query = page_url(config, member_id, now).partition("?")
    return base.rstrip("/") + UNSUBSCRIBE + (f"?{query}" if query else "")
