"""Till routes for cards (docs/programme/cards.md): sell or renew a card product (the
198元年卡), replace a member's card (换卡) and block a lost one (挂失); described in
edge/openapi/cards.json."""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from edge.api import after_commit_print, body, manager_signed_in, signed_in, till
from edge.services import cards as cards_svc

bp = Blueprint("cards", __name__, url_prefix="/api/v1")


@bp.post("/members/<member_id>/card-product")
def sell_card_product(member_id: str):
    """Sell or renew a card product to the member, paid in cash; prints a receipt."""
    staff = signed_in()
    data = body()
    result = cards_svc.sell_card(
        till(),
        staff,
        member_id,
        data.get("card_type"),
        data.get("tender", "cash"),
        data.get("card_sale_id"),
    )
    if not result["replayed"]:
        after_commit_print(result["receipt"])
    return jsonify(result), 200 if result["replayed"] else 201


@bp.post("/members/<member_id>/card-replacement")
def replace_member_card(member_id: str):
    """换卡, with a manager's approval: the old card blocked, the new one issued."""
    approver = manager_signed_in("换卡")
    data = body()
    result = cards_svc.replace_card(
        till(),
        g.staff,
        approver,
        member_id,
        data.get("old_card_no"),
        data.get("new_card_no"),
        data.get("reason"),
    )
    return jsonify(result), 201


@bp.post("/cards/<card_no>/block")
def block_lost_card(card_no: str):
    """挂失, with a manager's approval: the card blocked here and, through HQ, chain-wide."""
    approver = manager_signed_in("挂失")
    data = body()
    result = cards_svc.block_card(till(), g.staff, approver, card_no, data.get("reason"))
    return jsonify(result), 200 if result["already"] else 201
