"""Personal data as each role may see it.

- Phone numbers are always shown masked (``138****5678``); a role with
  ``members.reveal`` may ask for one in full, and each reveal is audited
  (``member.reveal_phone``).
- Without ``members.pii`` (the analyst) the name shows its first character only
  (``张**``) and the birthday its month only.
"""

from __future__ import annotations

from typing import Any

from hq.access.roles import Principal


def mask_phone(phone: str | None) -> str | None:
    if not phone:
        return phone
    if len(phone) <= 4:
        return "*" * len(phone)
    keep = 3 if len(phone) >= 11 else 0
    return phone[:keep] + "*" * (len(phone) - keep - 4) + phone[-4:]


def mask_name(name: str | None) -> str | None:
    if not name:
        return name
    return name[0] + "*" * max(1, len(name) - 1)


def member_for(principal: Principal, state: dict[str, Any]) -> dict[str, Any]:
    """A copy of a member's state (hq.ledger.member_state) as ``principal`` may see it."""
    out = dict(state)
    if "phone" in out:
        out["phone"] = mask_phone(out["phone"])
    if not principal.can("members.pii"):
        out["name"] = mask_name(out.get("name"))
        if out.get("birthday"):
            out["birthday"] = "****-" + str(out["birthday"])[5:7] + "-**"
        for key in ("notes", "occupation"):
            if out.get(key):
                out[key] = "***"
    return out
