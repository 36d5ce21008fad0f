"""The receipt's QR code: the member's signed, expiring link to HQ's member page
(core.member_link; docs/member-page.md).

The link key is derived from the chain lookup key this store holds (edge/phones.py), so
HQ, which holds the same lookup key, verifies what the till signed. A store that does not
hold the chain key yet (before its first snapshot) prints no QR code: an unsigned link
would only open HQ's refusal page.
"""

from __future__ import annotations

from core.member_link import link_expiry, link_key, sign_link
from edge.phones import held_lookup_key
from edge.services.context import Till


def self_service_url(till: Till, member_id: str) -> str:
    """``till.self_service_url`` for ``member_id``: ``{token}`` is the signed link, valid
    ``core.member_link.LINK_DAYS`` days from now; "" when the store cannot sign yet."""
    template = till.config.till.self_service_url
    if "{token}" not in template:
        return template.format(member_id=member_id)
    held = held_lookup_key(till.keys)
    if held is None:
        return ""
    token = sign_link(link_key(held[1]), member_id, link_expiry(till.now()))
    return template.format(token=token, member_id=member_id)
