"""Cards at the till: card products sold and renewed (the 198元年卡), the card type in
force for pricing, 充值升级 on a top-up, card replacement (换卡) and lost-card blocking
(挂失). Each writes its rows and ONE outbox item in one SQLite transaction
(docs/programme/cards.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from core import cards as card_rules
from core.errors import Conflict, NotFound, ValidationError
from core.ids import uuid7
from core.receipt import Receipt, ReceiptLine, ReceiptTender
from core.rules import Rules
from edge.models import Card, CardSale, Member
from edge.services import members as member_svc
from edge.services.context import Till
from edge.services.members import check_code
from edge.services.outbox import enqueue
from edge.services.receipts import _member, local_time  # the receipt parts every receipt shares
from edge.services.staff import SignedIn

MAX_REASON = 200


# ---- the card type in force ---------------------------------------------------------


def expires_on(member: Member) -> dt.date | None:
    return card_rules.parse_day(member.card_expires_on)


def in_force(till: Till, member: Member, today: dt.date, rules: Rules | None = None) -> str:
    """The card type the member prices and earns with today: a lapsed card product
    counts as its fallback (core.cards.card_type_in_force)."""
    rules = rules or till.rules()
    return (
        card_rules.card_type_in_force(rules, member.card_type, expires_on(member), today)
        or member.card_type
    )


def card_summary(till: Till, member: Member, today: dt.date) -> dict[str, Any]:
    """What the till screen shows of the member's card: its last day, whether it has
    lapsed, the card type in force, and the renewal on offer (a renewable card product).
    Nothing when the chain sells no card product and the member's card has no last day
    (the summary stays as it was before card products)."""
    rules = till.rules()
    if not rules.cards.products and member.card_expires_on is None:
        return {}
    last_day = expires_on(member)
    product = rules.cards.product(member.card_type)
    lapsed = product is not None and card_rules.is_lapsed(last_day, today)
    renewal = None
    if product is not None and (product.renewable or lapsed):
        renewal = {"card_type": product.card_type, "price": product.price}
    return {
        "card_expires_on": member.card_expires_on,
        "card_lapsed": lapsed,
        "card_type_in_force": in_force(till, member, today, rules),
        "renewal": renewal,
    }


def refuse_card_product(till: Till, card_type: str) -> None:
    """A card product is sold (``sell_card``), never given with a registration: a member
    registers on another card type and buys the card."""
    if till.rules().cards.product(card_type) is not None:
        raise ValidationError(
            f"{card_type}须购买, 请先以其他卡类型登记再购卡 (a card product is sold, not "
            "given at registration)",
            field="card_type",
        )


# ---- selling a card product ---------------------------------------------------------


def sell_card(
    till: Till,
    staff: SignedIn,
    member_id: str,
    card_type: Any,
    tender: Any = "cash",
    card_sale_id: Any = None,
) -> dict[str, Any]:
    """Sell (or renew) a card product to a member, paid in cash: the member's card type and
    last day, the CardSale row and one ``card_sale`` item, in one transaction; a receipt
    is printed after the commit. A retry with the same ``card_sale_id`` gets that sale back."""
    if not isinstance(card_type, str) or not card_type:
        raise ValidationError("card_type 须为卡类型名 (card_type is required)", field="card_type")
    if tender != "cash":
        raise ValidationError("卡费只收现金 (tender must be 'cash')", field="tender")
    if card_sale_id is not None:
        if not isinstance(card_sale_id, str) or not card_sale_id:
            raise ValidationError("card_sale_id must be a string", field="card_sale_id")
        check_code(card_sale_id, "card_sale_id")
    rules = till.rules()
    product = card_rules.product_for(rules, card_type)
    now = till.now()
    at, today = now.isoformat(timespec="milliseconds"), now.date()
    sale_id = card_sale_id or uuid7()
    with till.db.atomic():
        member = member_svc.resolve(member_id)
        done = CardSale.get_or_none(CardSale.id == sale_id)
        if done is not None:
            return _replayed_sale(done, member, card_type)
        if member.status != "active":
            raise Conflict(f"会员状态为 {member.status} (member not active)", field="member_id")
        period = card_rules.sell(product, member.card_type, expires_on(member), today)
        Member.update(
            card_type=period.card_type,
            card_expires_on=period.valid_to.isoformat(),
            updated_at=at,
        ).where(Member.id == member.id).execute()
        member.card_type, member.card_expires_on = period.card_type, period.valid_to.isoformat()
        body = {
            "card_sale_id": sale_id,
            "member_id": member.id,
            "card_type": period.card_type,
            "price": period.price,
            "valid_from": period.valid_from.isoformat(),
            "valid_to": period.valid_to.isoformat(),
            "renewal": period.renewal,
            "tender": "cash",
            "cashier": staff.code,
        }
        enqueue(till, "card_sale", body, at, rules.version)
        receipt = card_sale_receipt(till, body, member, staff, at, today)
        CardSale.create(
            id=sale_id,
            member_id=member.id,
            card_type=period.card_type,
            price=period.price,
            valid_from=body["valid_from"],
            valid_to=body["valid_to"],
            renewal=period.renewal,
            cashier=staff.code,
            occurred_at=at,
            receipt=receipt.to_dict(),
        )
    return {
        "card_sale_id": sale_id,
        "replayed": False,
        "member_id": member.id,
        "card_type": period.card_type,
        "price": period.price,
        "valid_from": body["valid_from"],
        "valid_to": body["valid_to"],
        "renewal": period.renewal,
        "receipt": receipt.to_dict(),
    }


def _replayed_sale(done: CardSale, member: Member, card_type: str) -> dict[str, Any]:
    if done.member_id != member.id or done.card_type != card_type:
        raise Conflict(
            f"卡费单号 {done.id} 已用于另一笔 (card_sale_id already used for another sale)",
            field="card_sale_id",
        )
    return {
        "card_sale_id": done.id,
        "replayed": True,
        "member_id": done.member_id,
        "card_type": done.card_type,
        "price": done.price,
        "valid_from": done.valid_from,
        "valid_to": done.valid_to,
        "renewal": done.renewal,
        "receipt": done.receipt,
    }


def card_sale_receipt(
    till: Till, body: dict[str, Any], member: Member, staff: SignedIn, at: str, today: dt.date
) -> Receipt:
    what = "续费" if body["renewal"] else "购卡"
    return Receipt(
        kind="card_sale",
        title=f"{body['card_type']}{what}凭证",
        store_name=till.config.store.name,
        store_code=till.store,
        document_no=body["card_sale_id"],
        occurred_at=local_time(at),
        cashier=staff.name,
        lines=(
            ReceiptLine(
                name=f"{body['card_type']}{what}",
                qty=1,
                unit_price=body["price"],
                amount=body["price"],
                note=f"有效期 {body['valid_from']} 至 {body['valid_to']}",
            ),
        ),
        subtotal=body["price"],
        total=body["price"],
        tenders=(ReceiptTender("cash", "现金", body["price"]),),
        member=_member(till, member, 0, today),
        opens_drawer=body["price"] > 0,
    )


# ---- 充值升级 ----------------------------------------------------------------------


def upgrade_on_topup(till: Till, member: Member, amount: int, rules: Rules, at: str) -> str | None:
    """Inside the top-up's transaction: move the member to the card type a single top-up
    of ``amount`` earns (rules' ``cards.upgrades``), or None. The new card type has no
    last day."""
    upgrade = card_rules.upgrade_for_topup(rules, amount, member.card_type)
    if upgrade is None:
        return None
    Member.update(card_type=upgrade.card_type, card_expires_on=None, updated_at=at).where(
        Member.id == member.id
    ).execute()
    member.card_type, member.card_expires_on = upgrade.card_type, None
    return upgrade.card_type


# ---- replacement (换卡) and blocking (挂失) -------------------------------------------


def _reason(reason: Any, default: str) -> str:
    if reason is None:
        return default
    if not isinstance(reason, str):
        raise ValidationError("reason 须为文字 (reason must be a string)", field="reason")
    text = reason.strip() or default
    if len(text) > MAX_REASON:
        raise ValidationError(f"reason 最多 {MAX_REASON} 字 (reason too long)", field="reason")
    return text


def _card_no(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip().isalnum():
        raise ValidationError(
            f"{field} 只能包含字母和数字 (card number must be alphanumeric)", field=field
        )
    return check_code(value.strip(), field)


def replace_card(
    till: Till,
    staff: SignedIn,
    approver: SignedIn,
    member_id: str,
    old_card_no: Any,
    new_card_no: Any,
    reason: Any = None,
) -> dict[str, Any]:
    """换卡: the member's old card is blocked and the new one issued to them, active; one
    ``card_replace`` item. Balances, points and history belong to the member, not to a
    card, so nothing else moves. A new card number any card already has is refused."""
    old_no = _card_no(old_card_no, "old_card_no")
    new_no = _card_no(new_card_no, "new_card_no")
    why = _reason(reason, "换卡")
    if old_no == new_no:
        raise ValidationError(
            "新卡号与旧卡号相同 (the new card is the old one)", field="new_card_no"
        )
    at = till.now().isoformat(timespec="milliseconds")
    with till.db.atomic():
        member = member_svc.resolve(member_id)
        old = Card.get_or_none(Card.card_no == old_no)
        if old is None or member_svc.resolve(old.member_id).id != member.id:
            raise NotFound(
                f"卡号 {old_no} 不是该会员的卡 (not a card of this member)", field="old_card_no"
            )
        taken = Card.get_or_none(Card.card_no == new_no)
        if taken is not None:
            owner = "该会员" if member_svc.resolve(taken.member_id).id == member.id else "其他会员"
            raise Conflict(
                f"卡号 {new_no} 已被{owner}使用 (card number already issued)", field="new_card_no"
            )
        old.status = "blocked"
        old.save()
        Card.create(card_no=new_no, member_id=member.id, issued_at=at)
        body = {
            "replace_id": uuid7(),
            "member_id": member.id,
            "old_card_no": old_no,
            "new_card_no": new_no,
            "reason": why,
            "cashier": staff.code,
            "approved_by": approver.code,
        }
        enqueue(till, "card_replace", body, at, till.rules().version)
    return body


def block_card(
    till: Till, staff: SignedIn, approver: SignedIn, card_no: Any, reason: Any = None
) -> dict[str, Any]:
    """挂失: the card is blocked here at once and, through one ``card_block`` item, at HQ
    and every store. A card already blocked is answered as it is (no second item)."""
    card_no = _card_no(card_no, "card_no")
    why = _reason(reason, "挂失")
    at = till.now().isoformat(timespec="milliseconds")
    with till.db.atomic():
        card = Card.get_or_none(Card.card_no == card_no)
        if card is None:
            raise NotFound(f"卡号 {card_no} 未登记 (unknown card)", field="card_no")
        try:
            member_id: str | None = member_svc.resolve(card.member_id).id
        except NotFound:  # a card whose member this store lacks is still blocked
            member_id = card.member_id
        if card.status == "blocked":
            return {"card_no": card_no, "member_id": member_id, "blocked": True, "already": True}
        card.status = "blocked"
        card.save()
        body = {
            "block_id": uuid7(),
            "card_no": card_no,
            "member_id": member_id,
            "reason": why,
            "cashier": staff.code,
            "approved_by": approver.code,
        }
        enqueue(till, "card_block", body, at, till.rules().version)
    return {"card_no": card_no, "member_id": member_id, "blocked": True, "already": False}
