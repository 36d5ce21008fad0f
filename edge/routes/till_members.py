"""Till routes for the member at the cashier's screen (docs/till-screen.md, "The member"):
what the registration form may offer, and a top-up's bonus and approval previewed before
the cashier takes the money. Described in edge/openapi/till_members.json."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from core.errors import ValidationError
from core.money import MAX_AMOUNT
from edge.api import signed_in, till
from edge.services import members as member_svc

bp = Blueprint("till_members", __name__, url_prefix="/api/v1")


@bp.get("/member-form")
def member_form():
    """What the registration and edit dialogs offer: the card types a member registers
    on, genders, calendars, marketing channels and the card products sold."""
    signed_in()
    return jsonify(member_svc.form_options(till()))


@bp.get("/topups/preview")
def topup_preview():
    """A top-up of ``amount`` fen before it is paid: principal and bonus as the top-up
    itself splits them, whether this cashier needs a manager for it, and the rules' bonus
    tiers (for quick amounts)."""
    staff = signed_in()
    raw = request.args.get("amount", "")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 12) or not 0 < int(raw) <= MAX_AMOUNT:
        raise ValidationError(
            f"充值金额须为 1 到 {MAX_AMOUNT} 分的整数 (amount must be whole fen, 1..{MAX_AMOUNT})",
            field="amount",
        )
    return jsonify(member_svc.topup_preview(till(), staff, int(raw)))
