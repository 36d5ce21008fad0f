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
# a message's 退订 link works this long (a member reading an old message can still say
# no); its token opens the unsubscribe page only (PortalKeys.unsubscribe)
UNSUBSCRIBE_DAYS = 400


@functools.lru_cache(maxsize=4)
def _keys(config: Any) -> PortalKeys:
    # the key file is read once per configuration, not once per message of a campaign
    return PortalKeys(chain_lookup(config))


def page_url(config: Any, member_id: str, now: dt.datetime) -> str:
    """The member page's address for ``member_id``, open for ``core.member_link.LINK_DAYS``
    from ``now`` (naive UTC)."""
    token = sign_link(_keys(config).link, member_id, link_expiry(now))
    return config.member_page_url.replace("{token}", token)


def unsubscribe_url(config: Any, member_id: str, now: dt.datetime) -> str:
    """The unsubscribe page's address for ``member_id`` (where the member page's is, plus
    ``/unsubscribe``), open for ``UNSUBSCRIBE_DAYS`` from ``now``, with a token signed by
    the unsubscribe key: it opens that page and not the member's."""
    expires = link_expiry(now, UNSUBSCRIBE_DAYS)
    token = sign_link(_keys(config).unsubscribe, member_id, expires)
    base, _, query = config.member_page_url.replace("{token}", token).partition("?")
    return base.rstrip("/") + UNSUBSCRIBE + (f"?{query}" if query else "")
