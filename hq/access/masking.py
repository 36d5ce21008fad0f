"""Personal data as each role may see it.

- Phone numbers are always shown masked (``138****5678``); a role with
  ``members.reveal`` may ask for one in full, and each reveal is audited
  (``member.reveal_phone``).
- Without ``members.pii`` (the analyst) the name shows its first character only
  (``张**``) and the birthday its month only.
"""

from __future__ import annotations

from typing import Any

from core import receipt
from hq.access.roles import Principal


def mask_phone(phone: str | None) -> str | None:
    """138****5678, as the receipt prints it (core.receipt.mask_phone); None stays None."""
    return receipt.mask_phone(phone) if phone else phone


def mask_name(name: str | None) -> str | None:
    """张*, as the receipt prints it (core.receipt.mask_name); None stays None."""
    return receipt.mask_name(name) if name else name


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
