"""Marketing consent at the till (PIPL): given per channel at registration, changed later.

The till keeps no copy: consent is HQ's to hold and to honour (hq/privacy.py), so each
answer goes up as an outbox item (``registration`` body ``consent``, or a ``consent``
item) in the same transaction as the fact. No channel is ever assumed: absent means no.
"""

from __future__ import annotations

from typing import Any

from core.errors import ProtocolError, ValidationError
from core.protocol import CONSENT_CHANNELS, validate_consent
from edge.services.context import Till
from edge.services.outbox import enqueue

NO_CONSENT: dict[str, bool] = dict.fromkeys(CONSENT_CHANNELS, False)


def consent_from_request(raw: Any, *, partial: bool = False) -> dict[str, bool]:
    """The ``consent`` object of a request: ``{sms, wechat, call}`` booleans. At
    registration (``partial`` False) a channel left out is no consent; a change
    (``partial`` True) names only the channels it changes, at least one."""
    if raw is None and not partial:
        return dict(NO_CONSENT)
    try:
        given = validate_consent(raw, "consent")
    except ProtocolError as exc:
        raise ValidationError(
            f"营销同意须为 {{sms, wechat, call}}: true/false ({exc.message})", field="consent"
        ) from None
    return given if partial else {**NO_CONSENT, **given}


def change_consent(
    till: Till, member_id: str, consent: dict[str, bool], cashier: str
) -> dict[str, Any]:
    """The member changed their mind at the till: one ``consent`` item for HQ."""
    from edge.services.members import resolve

    now = till.now().isoformat(timespec="seconds")
    with till.db.atomic():
        member = resolve(member_id)
        if member.status != "active":
            raise ValidationError(
                f"会员状态为 {member.status}, 无法修改营销同意", field="member_id"
            )
        item = enqueue(
            till,
            "consent",
            {"member_id": member.id, "consent": consent, "changed_at": now, "cashier": cashier},
            now,
            till.rules().version,
        )
    return {"member_id": member.id, "consent": consent, "changed_at": now, "seq": item.seq}
