"""Cards at HQ (docs/programme/cards.md): card products sold at the tills (the 198元年卡)
checked and applied, 充值升级 verified, the nightly ``card-expiry`` job, card types set by
hand, card replacement (换卡) and blocking (挂失) from a till or from HQ staff.

Up items are applied inside the ingest's batch transaction (hq/apply.py calls these);
HQ's own actions (the CLI, later the console) are plain functions taking the database
and a clock time, each in its own transaction with its audit row."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

import peewee as pw

from core import cards as card_rules
from core.errors import Conflict, NotFound, ValidationError
from core.protocol import Change
from core.rules import CARD_TYPE_DEFAULT, Rules
from hq import audit
from hq.changes import ChangeSet, card_state, flush_changes
from hq.ledger import resolve_member
from hq.members import touch_through
from hq.models import Card, CardSale, CardType, CardTypeChange, Member, RulesVersion

if TYPE_CHECKING:
    from hq.apply import ItemContext
    from hq.scheduler import JobContext

log = logging.getLogger(__name__)


# ---- shared pieces ------------------------------------------------------------------


def set_card_blocked(card: Card, blocked: bool, reason: str, changes: ChangeSet) -> None:
    """Block (or unblock) a card and record both changes every store applies (``card`` and
    ``card_block``): the one path HQ's API, the CLI and the tills' items take."""
    card.status = "blocked" if blocked else "active"
    card.blocked_reason = reason if blocked else None
    card.save()
    changes.add("card", card.card_no, card_state(card))
    changes.add(
        "card_block", card.card_no, {"card_no": card.card_no, "blocked": blocked, "reason": reason}
    )


def _set_card_type(
    member: Member,
    card_type: str,
    expires_on: dt.date | None,
    reason: str,
    ref: str | None,
    now: dt.datetime,
    store: str | None = None,
    by: str | None = None,
) -> None:
    """The member's card type and last day, written now (the batch's book writes only
    balances), on the member object the change record is read from, and in the history."""
    CardTypeChange.insert(
        member_id=member.id,
        from_type=member.card_type,
        to_type=card_type,
        expires_on=expires_on,
        reason=reason,
        ref=ref,
        store=store,
        by=by,
        at=now,
    ).on_conflict_ignore().execute()
    member.card_type, member.card_expires_on, member.updated_at = card_type, expires_on, now
    Member.update(card_type=card_type, card_expires_on=expires_on, updated_at=now).where(
        Member.id == member.id
    ).execute()


def _replace(
    member: Member, old_no: str, new_no: str, store: str | None, changes: ChangeSet, live_id: Any
) -> None:
    """换卡: the old card (the member's) blocked, the new one issued to the member. A new
    number any other member's card has is refused; balances stay with the member."""
    if old_no == new_no:
        raise ValidationError(
            "新卡号与旧卡号相同 (the new card is the old one)", field="new_card_no"
        )
    old = Card.get_or_none(Card.card_no == old_no)
    if old is None or live_id(old.member_id) != member.id:
        raise NotFound(
            f"卡号 {old_no} 不是该会员的卡 (card {old_no} is not this member's)",
            field="old_card_no",
        )
    new = Card.get_or_none(Card.card_no == new_no)
    if new is not None and live_id(new.member_id) != member.id:
        raise Conflict(
            f"卡号 {new_no} 已被其他会员使用 (card {new_no} belongs to another member)",
            field="new_card_no",
        )
    set_card_blocked(old, True, "换卡", changes)
    if new is None:
        new = Card.create(
            card_no=new_no, member_id=member.id, card_type=member.card_type, issued_store=store
        )
    elif new.status != "active":
        new.status, new.blocked_reason = "active", None
        new.save()
    changes.add("card", new.card_no, card_state(new))


def latest_rules() -> Rules | None:
    row = RulesVersion.select().order_by(RulesVersion.version.desc()).first()
    return Rules.from_dict(row.data) if row else None


def _day(occurred_at: str) -> dt.date:
    return dt.datetime.fromisoformat(occurred_at).date()


# ---- up items (called by hq/apply.py inside the batch) ------------------------------


def _refused(name: str, message: str) -> Exception:
    from hq.apply import MoneyRefused

    return MoneyRefused(message, field=name)


def _checked_rules(ctx: ItemContext, what: str) -> Rules:
    """The rules version the store priced with; without it HQ cannot check the money,
    so the item is refused (invariant 9), never posted unchecked."""
    rules = ctx.cache.rules_for(ctx.item.rules_version)
    if rules is None:
        raise _refused(
            what,
            f"总部没有规则版本 {ctx.item.rules_version}, 无法核对 (HQ does not hold rules "
            f"version {ctx.item.rules_version} to check the {what})",
        )
    return rules


def apply_card_sale(ctx: ItemContext, body: dict[str, Any]) -> None:
    """A card product sold at a till: the price must be the product's in the item's rules
    version and the period one the product gives; HQ then gives the member the period,
    extended past a last day HQ already knows of (a renewal made meanwhile at another
    store counts too)."""
    from hq.apply import _member_for

    sale_id = body["card_sale_id"]
    if CardSale.get_or_none(CardSale.card_sale_id == sale_id) is not None:
        raise Conflict(f"card sale {sale_id} was already ingested", field="card_sale_id")
    rules = _checked_rules(ctx, "price")
    product = rules.cards.product(body["card_type"])
    if product is None:
        raise _refused(
            "card_type",
            f"规则版本 {rules.version} 没有卡产品 {body['card_type']} "
            f"(card_type: rules version {rules.version} sells no card {body['card_type']!r})",
        )
    if body["price"] != product.price:
        raise _refused(
            "price",
            f"卡费与规则不符 (price {body['price']}, rules version {rules.version} "
            f"sell {product.card_type} at {product.price})",
        )
    valid_from = dt.date.fromisoformat(body["valid_from"])
    valid_to = dt.date.fromisoformat(body["valid_to"])
    day = _day(ctx.item.occurred_at)
    if valid_from < day:
        raise _refused("valid_from", f"有效期早于售卡日 (valid_from {valid_from} < {day})")
    if valid_to != card_rules.period_end(product, valid_from):
        raise _refused(
            "valid_to",
            f"有效期与规则不符 (valid_to {valid_to}, the product gives "
            f"{card_rules.period_end(product, valid_from)} from {valid_from})",
        )
    member = _member_for(ctx, body["member_id"])
    assert member is not None  # noqa: S101 - member_id is required by the envelope
    # rows the batch holds back (a registration in the same batch) are written first:
    # the card type is written now, not with the book's balances
    ctx.book.flush()
    start = valid_from
    if member.card_type == product.card_type and member.card_expires_on is not None:
        if member.card_expires_on >= valid_from:
            start = member.card_expires_on + card_rules.ONE_DAY
    end = card_rules.period_end(product, start)
    CardSale.create(
        card_sale_id=sale_id,
        store=ctx.item.store,
        seq=ctx.item.seq,
        member_id=member.id,
        card_type=product.card_type,
        price=product.price,
        valid_from=start,
        valid_to=end,
        renewal=bool(body["renewal"]),
        rules_version=rules.version,
        occurred_at=ctx.item.occurred_at,
        body=body,
        ingested_at=ctx.now,
    )
    reason = "renewal" if body["renewal"] else "sale"
    _set_card_type(member, product.card_type, end, reason, sale_id, ctx.now, ctx.item.store)
    touch_through(member, ctx.item.store, ctx.item.seq, ctx.book)
    ctx.changes.member(member.id)


def note_card_not_in_force(ctx: ItemContext, body: dict[str, Any]) -> None:
    """A sale priced with a card product HQ knows the member did not hold in force on the
    sale's day (lapsed, or another card type): posted as the till priced it (HQ re-prices
    with the card type the till sent, and a renewal may not have reached HQ in every
    order of events), but held as a ``card_not_in_force`` exception for staff, with the
    member discount given as its amount."""
    pricing_member = (body.get("pricing_input") or {}).get("member") or {}
    claimed = pricing_member.get("card_type")
    rules = ctx.cache.rules_for(ctx.item.rules_version)
    if not body.get("member_id") or rules is None or rules.cards.product(claimed) is None:
        return
    try:
        member = ctx.book.member(body["member_id"])
    except NotFound:
        return
    day = _day(ctx.item.occurred_at)
    held = member.card_type == claimed and not card_rules.is_lapsed(member.card_expires_on, day)
    if held:
        return
    ctx.open_exception(
        "card_not_in_force",
        body["sale_id"],
        {
            "reason": f"销售按 {claimed} 计价, 总部记录该会员 {day} 时为 {member.card_type}"
            f"{'(有效期至 ' + member.card_expires_on.isoformat() + ')' if member.card_expires_on else ''} "
            f"(sale priced as {claimed}; HQ has the member on {member.card_type} on {day})",
            "card_type": claimed,
        },
        amount=int(body.get("member_discount") or 0),
        member_id=member.id,
    )


def check_topup_upgrade(ctx: ItemContext, body: dict[str, Any]) -> None:
    """充值升级 said by a top-up item: the card type must be the one the rules' highest
    threshold the principal reaches gives. Checked before the top-up posts anything."""
    claimed = body.get("card_type")
    if claimed is None:
        return
    rules = _checked_rules(ctx, "card_type")
    reached = [u for u in rules.cards.upgrades if body["principal"] >= u.threshold]
    due = max(reached, key=lambda u: u.threshold).card_type if reached else None
    if claimed != due:
        raise _refused(
            "card_type",
            f"充值升级与规则不符 (card_type {claimed!r} for a top-up of {body['principal']}: "
            f"rules version {rules.version} give {due!r})",
        )


def apply_topup_upgrade(ctx: ItemContext, body: dict[str, Any], member: Member) -> None:
    """After the top-up posted: move the member up, unless HQ already has them on that
    card type or a higher upgrade (an upgrade never moves a member down)."""
    if body.get("card_type") is None:
        return
    rules = _checked_rules(ctx, "card_type")
    upgrade = card_rules.upgrade_for_topup(rules, body["principal"], member.card_type)
    if upgrade is not None:
        ctx.book.flush()
        _set_card_type(
            member, upgrade.card_type, None, "upgrade", body["topup_id"], ctx.now, ctx.item.store
        )
        ctx.changes.member(member.id)


def apply_card_replace(ctx: ItemContext, body: dict[str, Any]) -> None:
    """换卡 at a till, applied chain-wide and audited with the till's cashier."""
    member = ctx.book.member(body["member_id"])
    ctx.book.flush()  # a card registered in this batch is a row before it is looked up

    def live_id(member_id: str) -> str | None:
        try:
            return ctx.book.member(member_id).id
        except NotFound:
            return None

    _replace(member, body["old_card_no"], body["new_card_no"], ctx.item.store, ctx.changes, live_id)
    audit.record(
        ctx.db,
        audit.till_actor(ctx.item.store, body["cashier"]),
        "card.replace",
        member.id,
        body["reason"],
        store=ctx.item.store,
        at=ctx.now,
        old_card_no=body["old_card_no"],
        new_card_no=body["new_card_no"],
        approved_by=body["approved_by"],
    )
    touch_through(member, ctx.item.store, ctx.item.seq, ctx.book)
    ctx.changes.member(member.id)


def apply_card_block(ctx: ItemContext, body: dict[str, Any]) -> None:
    """挂失 at a till: the card blocked chain-wide (the same path as HQ's own block)."""
    ctx.book.flush()  # a card registered in this batch is a row before it is looked up
    card = Card.get_or_none(Card.card_no == body["card_no"])
    if card is None:
        raise NotFound(f"卡不存在: {body['card_no']}", field="card_no")
    set_card_blocked(card, True, body["reason"], ctx.changes)
    audit.record(
        ctx.db,
        audit.till_actor(ctx.item.store, body["cashier"]),
        "card.block",
        card.card_no,
        body["reason"],
        store=ctx.item.store,
        at=ctx.now,
        member_id=card.member_id,
        approved_by=body["approved_by"],
    )


# ---- merges ---------------------------------------------------------------------------


def merge_cards(loser: Member, survivor: Member, now: dt.datetime) -> None:
    """Two members becoming one (hq.members.merge_members, before the survivor is saved):
    the card history moves to the survivor, and a card product the other record holds
    with a later last day (one the member paid for) comes with it when the survivor is
    on the default card type or on a card product ending sooner."""
    for model in (CardSale, CardTypeChange):
        model.update(member_id=survivor.id).where(model.member_id == loser.id).execute()
    if loser.card_expires_on is None or loser.card_expires_on < now.date():
        return
    survivor_is_plain = survivor.card_type in (None, "", CARD_TYPE_DEFAULT)
    survivor_ends_sooner = (
        survivor.card_expires_on is not None and survivor.card_expires_on < loser.card_expires_on
    )
    if survivor_is_plain or survivor_ends_sooner:
        CardTypeChange.insert(
            member_id=survivor.id,
            from_type=survivor.card_type,
            to_type=loser.card_type,
            expires_on=loser.card_expires_on,
            reason="merge",
            ref=loser.id,
            at=now,
        ).on_conflict_ignore().execute()
        survivor.card_type, survivor.card_expires_on = loser.card_type, loser.card_expires_on


# ---- the nightly job ------------------------------------------------------------------


def expire_cards(ctx: JobContext) -> dict[str, int]:
    """``card-expiry``: members whose card product's last day is before the chain's
    business day move to its fallback (in the latest rules), recorded as a ``lapse`` and
    sent down. Idempotent per day: a lapsed member no longer holds the card product."""
    return expire_cards_on(ctx.db, ctx.today(), ctx.clock())


def expire_cards_on(db: pw.Database, today: dt.date, now: dt.datetime) -> dict[str, int]:
    rules = latest_rules()
    products = {p.card_type: p for p in rules.cards.products} if rules else {}
    if not products:
        return {"lapsed": 0}
    lapsed = 0
    with db.atomic():
        changes = ChangeSet()
        query = Member.select().where(
            Member.card_type.in_(sorted(products))
            & (Member.card_expires_on < today)
            & (Member.status == "active")
        )
        for member in query.order_by(Member.id):
            last_day = member.card_expires_on
            fallback = products[member.card_type].fallback
            _set_card_type(member, fallback, None, "lapse", f"lapse:{last_day.isoformat()}", now)
            changes.member(member.id)
            lapsed += 1
        flush_changes(db, changes, now)
    log.info("card-expiry for %s: %d members lapsed to their fallback", today, lapsed)
    return {"lapsed": lapsed}


# ---- HQ staff's actions (the CLI; the console later) ----------------------------------


def known_card_types(rules: Rules | None) -> set[str]:
    names = {CARD_TYPE_DEFAULT} | {ct.name for ct in CardType.select(CardType.name)}
    if rules is not None:
        names |= {p.card_type for p in rules.cards.products}
        names |= {u.card_type for u in rules.cards.upgrades}
        names |= {p.fallback for p in rules.cards.products}
    return names


def set_card_type(
    db: pw.Database,
    member_id: str,
    card_type: str,
    by: str,
    reason: str,
    now: dt.datetime,
    expires_on: dt.date | None = None,
) -> list[Change]:
    """A member's card type changed by hand (audited ``card_type.set``). A card product
    may be given a last day; without one it never lapses."""
    actor = audit.require_actor(by)
    why = audit.require_reason(reason, "更改卡类型")
    rules = latest_rules()
    known = known_card_types(rules)
    if card_type not in known:
        raise ValidationError(
            f"未知卡类型 {card_type!r}, 可选: {sorted(known)} (unknown card type)",
            field="card_type",
        )
    if expires_on is not None and (rules is None or rules.cards.product(card_type) is None):
        raise ValidationError(
            f"{card_type} 不是有期限的卡, 不能设有效期 (only a card product has a last day)",
            field="expires_on",
        )
    with db.atomic():
        member = resolve_member(db, member_id)
        before = (member.card_type, member.card_expires_on)
        _set_card_type(member, card_type, expires_on, "manual", None, now, by=actor)
        audit.record(
            db,
            actor,
            "card_type.set",
            member.id,
            why,
            at=now,
            from_type=before[0],
            to_type=card_type,
            expires_on=expires_on.isoformat() if expires_on else None,
        )
        changes = ChangeSet()
        changes.member(member.id)
        return flush_changes(db, changes, now)


def replace_card(
    db: pw.Database,
    member_id: str,
    old_no: str,
    new_no: str,
    by: str,
    reason: str,
    now: dt.datetime,
) -> list[Change]:
    """换卡 by HQ staff (audited ``card.replace``)."""
    actor = audit.require_actor(by)
    why = audit.require_reason(reason, "换卡")
    with db.atomic():
        member = resolve_member(db, member_id)

        def live_id(owner: str) -> str | None:
            try:
                return resolve_member(db, owner).id
            except NotFound:
                return None

        changes = ChangeSet()
        _replace(member, old_no, new_no, None, changes, live_id)
        audit.record(
            db,
            actor,
            "card.replace",
            member.id,
            why,
            at=now,
            old_card_no=old_no,
            new_card_no=new_no,
        )
        changes.member(member.id)
        return flush_changes(db, changes, now)


def block_card(
    db: pw.Database, card_no: str, by: str, reason: str, now: dt.datetime, blocked: bool = True
) -> list[Change]:
    """挂失 (or lifting it) by HQ staff, audited ``card.block`` / ``card.unblock``: the same
    path as HQ's API and the tills' items (``set_card_blocked``)."""
    actor = audit.require_actor(by)
    why = audit.require_reason(reason, "挂失")
    with db.atomic():
        card = Card.get_or_none(Card.card_no == card_no)
        if card is None:
            raise NotFound(f"卡不存在: {card_no}", field="card_no")
        changes = ChangeSet()
        set_card_blocked(card, blocked, why, changes)
        action = "card.block" if blocked else "card.unblock"
        audit.record(db, actor, action, card.card_no, why, at=now, member_id=card.member_id)
        return flush_changes(db, changes, now)
