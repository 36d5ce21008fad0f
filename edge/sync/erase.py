"""A member erased at HQ (PIPL), applied at the store: the person goes, the money stays.

HQ sends the member with op ``erase`` (and, in snapshots, with status ``erased``); the
applier writes the record as any member record and then calls ``erase_local_copies``,
which clears what this store itself kept of the person: the member row's contacts
(including the encrypted phone a registering store holds), the registration and consent
items HQ has acknowledged, and the masked name and phone on receipts. Ledger rows,
sales, returns and top-ups stay as they are: they carry the member id only.

Items HQ has not acknowledged are left whole: HQ has not seen them, so they are not part
of what it erased (a resent registration must still carry its phone).
"""

from __future__ import annotations

import logging

from edge.models import Member

log = logging.getLogger("edge.sync.erase")

_CLEAR_MEMBER = (
    "UPDATE member SET name = '', name_pinyin = '', name_initials = '', phone_hash = NULL, "
    "phone_enc = NULL, phone_tail = '', gender = '', birthday = NULL, "
    "birthday_calendar = 'solar', birthday_leap_month = 0, password_hash = NULL, "
    # upkeep: the richer profile
    "occupation = '', preferences = NULL, anniversaries = NULL, notes = '', tags = NULL, "
    "extra = NULL WHERE id = ?"
)
_SCRUB_OUTBOX = (
    # json_replace changes only the fields an item has (json_set would add them)
    "UPDATE outbox SET payload = json_remove(json_replace(payload, '$.body.name', '', "
    "'$.body.phone', '', '$.body.gender', '', '$.body.birthday', NULL, "
    "'$.body.password_hash', NULL), '$.body.consent', "
    # upkeep: the richer profile, a profile edit's changes
    "'$.body.occupation', '$.body.preferences', '$.body.anniversaries', '$.body.notes', "
    "'$.body.tags', '$.body.extra', '$.body.changes') "
    "WHERE json_extract(payload, '$.body.member_id') = ? AND acked "
    "AND kind IN ('registration', 'consent', 'member_update', 'member_password')"
)
# a receipt's member block: masked, but still a piece of the person
_RECEIPT = "json_replace({0}, '$.member.masked_name', '', '$.member.masked_phone', '')"
_HAS_MEMBER = "json_type({0}, '$.member') = 'object'"
_SCRUB_SALES = (
    f"UPDATE sale SET receipt = {_RECEIPT.format('receipt')} "  # noqa: S608
    f"WHERE member_id = ? AND {_HAS_MEMBER.format('receipt')}"
)
_SCRUB_RETURNS = (
    f"UPDATE sale_return SET receipt = {_RECEIPT.format('receipt')} "  # noqa: S608
    f"WHERE sale_id IN (SELECT id FROM sale WHERE member_id = ?) "
    f"AND {_HAS_MEMBER.format('receipt')}"
)
_SCRUB_TOPUPS = (
    f"UPDATE top_up SET receipt = {_RECEIPT.format('receipt')} "  # noqa: S608
    f"WHERE member_id = ? AND {_HAS_MEMBER.format('receipt')}"
)

# -- cards: a card product's receipt carries the member block too
_SCRUB_CARD_SALES = (
    f"UPDATE card_sale SET receipt = {_RECEIPT.format('receipt')} "  # noqa: S608
    f"WHERE member_id = ? AND {_HAS_MEMBER.format('receipt')}"
)


_SCRUB_SV_REFUNDS = (  # upkeep: a stored value refund's slip
    f"UPDATE sv_refund SET receipt = {_RECEIPT.format('receipt')} "  # noqa: S608
    f"WHERE member_id = ? AND {_HAS_MEMBER.format('receipt')}"
)


def erase_local_copies(member_id: str) -> None:
    """Clear this store's copies of an erased member's personal data (inside the
    applier's transaction)."""
    db = Member._meta.database
    db.execute_sql(_CLEAR_MEMBER, (member_id,))
    for sql in (
        _SCRUB_OUTBOX,
        _SCRUB_SALES,
        _SCRUB_RETURNS,
        _SCRUB_TOPUPS,
        _SCRUB_CARD_SALES,
        _SCRUB_SV_REFUNDS,
    ):
        db.execute_sql(sql, (member_id,))
    log.info("member %s erased at HQ: personal data cleared here", member_id)
