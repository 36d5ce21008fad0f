"""Applying one up item (sale, return, top-up, registration) to the chain database.

Called by the ingest inside the batch's transaction, with the batch's ``Book``
(members, lots and rows held in memory, written together). A business refusal
makes the ingest run the batch again with that item rejected up front.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import peewee as pw

from core.errors import Conflict, HuiyuanError, NotFound, ValidationError
from core.phone import normalise_phone
from core.points import expiry_for, points_for_fen, sale_points_earned
from core.pricing import LineInput, MemberContext, PricedBasket, price_basket, share_of
from core.protocol import UpItem
from core.rules import DEMO_RULES, Rules
from core.stored_value import Split, refund_split
from core.tenders import sum_by_kind
from hq import shifts  # -- shifts and day close
from hq.changes import ChangeSet, coupon_state
from hq.followups import tasks as followup_tasks  # -- follow-ups (issue 14)
from hq.ledger import Book, Posting, credit_points, post_stored_value, spend_points
from hq.members import prefetch_owners, register_member, touch_through
from hq.models import (
    Authorization,
    Card,
    Coupon,
    HqException,
    Member,
    PhoneKey,
    Return,
    RulesVersion,
    Sale,
    TopUp,
    one_of,
)
from hq.privacy import apply_consent, apply_registration_consent
from hq.programme import cards as programme_cards
from hq.programme import coupons as coupon_rules
from hq.programme import staff as staff_programme
from hq.programme import upkeep
from hq.programme.points import apply_gift_redemption  # points (docs/programme/points.md)
from hq.programme.tiers import add_spend, apply_rules_status, paid_fen
from hq.reports import summary as report_summary  # -- reports: the KPIs' summary tables

REPRICE_FIELDS = (
    "subtotal",
    "member_discount",
    "order_discount",
    "manual_adjustment",
    "rounding",
    "total",
)


@dataclass(frozen=True, slots=True)
class SaleOnRecord:
    """A sale as HQ applied it: what a return of it is checked against."""

    store: str
    member_id: str | None
    body: dict[str, Any]


@dataclass
class BatchCache:
    """What one batch's items share: the book, rules by version, ids known to exist."""

    book: Book
    rules: dict[int, Rules | None] = field(default_factory=dict)
    known_sales: set[str] = field(default_factory=set)
    known_topups: set[str] = field(default_factory=set)
    held_auths: dict[str, Authorization] = field(default_factory=dict)
    # what returns are checked against: the sales they name and those sales' earlier returns
    sales: dict[str, SaleOnRecord] = field(default_factory=dict)
    returns_of: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    known_returns: set[str] = field(default_factory=set)
    # (store, rules version) pairs HQ lacks whose exception is open (or opened in this batch)
    unknown_rules_noted: set[tuple[str, int]] = field(default_factory=set)
    # -- staff: sku -> {"category", "cost"} from HQ's catalogue, for the sales' line_goods
    goods: dict[str, dict[str, Any]] = field(default_factory=dict)

    def prefetch(self, store: str, items: list[Any]) -> None:
        """Read what the batch's items will look up with one query per table (members and
        lots are loaded by the book on first use), instead of one per item."""
        members: set[str] = set()
        lots: set[str] = set()
        sale_ids: set[str] = set()
        topup_ids: set[str] = set()
        returned_sales: set[str] = set()
        return_ids: set[str] = set()
        cards: set[str] = set()
        phones: set[str] = set()
        for item in items:
            body = item.get("body") if isinstance(item, dict) else None
            if not isinstance(body, dict):
                continue
            kind = item.get("kind")
            members.update(_strings(body.get("member_id")))
            lot = body.get("points_lot")
            if isinstance(lot, dict):
                lots.update(_strings(lot.get("lot_id")))
            for key in ("points_lots_used", "points_lots_restored"):
                for pair in body.get(key) or []:
                    if isinstance(pair, list) and pair:
                        lots.update(_strings(pair[0]))
            for sale_id in _strings(body.get("sale_id")):
                lots.add(f"{sale_id}:earn")
                if kind == "sale":
                    sale_ids.add(sale_id)
            if kind == "return":
                lots.update(f"{r}:restore" for r in _strings(body.get("return_id")))
                return_ids.update(_strings(body.get("return_id")))
                returned_sales.update(_strings(body.get("sale_id")))
            elif kind == "topup":
                topup_ids.update(_strings(body.get("topup_id")))
            elif kind == "registration":
                cards.update(_strings(body.get("card_no")))
                for phone in _strings(body.get("phone")):
                    try:
                        phones.add(normalise_phone(phone))
                    except HuiyuanError:
                        pass  # the item is refused when it is applied
        staff_programme.prefetch_goods(self.goods, items)  # -- staff: one query per batch
        book = self.book
        book.want(members, lots)
        if cards:
            prefetch_owners(book.card_owners, Card, Card.card_no, cards)
        if phones:
            prefetch_owners(book.phone_owners, PhoneKey, PhoneKey.phone, phones)
        if topup_ids:
            self.known_topups.update(
                t
                for (t,) in TopUp.select(TopUp.topup_id)
                .where(one_of(TopUp.topup_id, topup_ids))
                .tuples()
            )
        if returned_sales or return_ids:
            self._prefetch_returns(returned_sales, return_ids)
        if not sale_ids:
            return
        self.known_sales.update(
            s for (s,) in Sale.select(Sale.sale_id).where(one_of(Sale.sale_id, sale_ids)).tuples()
        )
        for auth in Authorization.select().where(
            (Authorization.store == store)
            & (one_of(Authorization.sale_id, sale_ids))
            & (Authorization.status == "held")
        ):
            self.held_auths[auth.sale_id] = auth

    def _prefetch_returns(self, sale_ids: set[str], return_ids: set[str]) -> None:
        """The sales the batch's returns name and every return already made of them."""
        for sale_id, store, member_id, body in (
            Sale.select(Sale.sale_id, Sale.store, Sale.member_id, Sale.body)
            .where(one_of(Sale.sale_id, sale_ids))
            .tuples()
        ):
            self.sales[sale_id] = SaleOnRecord(store, member_id, body)
        for return_id, sale_id, body in (
            Return.select(Return.return_id, Return.sale_id, Return.body)
            .where(one_of(Return.sale_id, sale_ids) | one_of(Return.return_id, return_ids))
            .tuples()
        ):
            self.known_returns.add(return_id)
            self.returns_of.setdefault(sale_id, []).append(body)

    def rules_for(self, version: int) -> Rules | None:
        if version not in self.rules:
            row = RulesVersion.get_or_none(RulesVersion.version == version)
            self.rules[version] = Rules.from_dict(row.data) if row else None
        return self.rules[version]


@dataclass
class ItemContext:
    db: pw.Database
    item: UpItem
    now: dt.datetime
    changes: ChangeSet
    cache: BatchCache

    @property
    def book(self) -> Book:
        return self.cache.book

    def posting(self, reason: str, ref: str | None) -> Posting:
        return Posting(reason, ref, self.item.store, self.item.seq, self.now)

    def open_exception(
        self,
        kind: str,
        ref: str,
        details: dict[str, Any],
        amount: int = 0,
        member_id: str | None = None,
    ) -> None:
        """An open exception about this item (its store and seq), booked with the batch:
        HQ keeps what the store sent and a person looks at what differs."""
        self.book.insert(
            HqException,
            kind=kind,
            member_id=member_id,
            store=self.item.store,
            seq=self.item.seq,
            ref=ref,
            details=details,
            created_at=self.now,
            status="open",
            balance=None,
            amount=amount,
            recovered=0,
            closed_at=None,
        )


def apply_item(ctx: ItemContext) -> None:
    handler = APPLIERS[ctx.item.kind]
    handler(ctx, ctx.item.body)


def _int(body: dict[str, Any], key: str, default: int = 0) -> int:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{key} must be an integer", field=key)
    return value


def _split(body: dict[str, Any], key: str = "stored_value") -> tuple[int, int]:
    sv = body.get(key) or {}
    if not isinstance(sv, dict):
        raise ValidationError(f"{key} must be an object", field=key)
    return _int(sv, "principal"), _int(sv, "bonus")


def _member_for(ctx: ItemContext, member_id: str | None) -> Member | None:
    if not member_id:
        return None
    try:
        return ctx.book.member(member_id)
    except NotFound:
        # A till only knows members it registered or received from HQ, so this is a
        # bug or a lost registration: keep the money, make the member, tell staff.
        member = Member.create(
            id=member_id,
            created_at=ctx.now,
            updated_at=ctx.now,
            registered_store=ctx.item.store,
        )
        HqException.create(
            kind="unknown_member",
            member_id=member_id,
            store=ctx.item.store,
            seq=ctx.item.seq,
            ref=ctx.item.id,
            details={"kind": ctx.item.kind},
            created_at=ctx.now,
        )
        ctx.book.adopt(member)
        return member


def apply_sale(ctx: ItemContext, body: dict[str, Any]) -> None:
    sale_id = body["sale_id"]
    if sale_id in ctx.cache.known_sales:
        raise Conflict(f"sale {sale_id} was already ingested", field="sale_id")
    check_sale(ctx, body)  # before anything is posted: refused as a whole if it does not add up
    programme_cards.note_card_not_in_force(ctx, body)  # -- cards: a lapsed card's price
    member = _member_for(ctx, body.get("member_id"))
    principal, bonus = _split(body)
    points_used = _int(body, "points_used")
    earned = _int(body, "points_earned")
    ctx.book.insert(
        Sale,
        sale_id=sale_id,
        store=ctx.item.store,
        seq=ctx.item.seq,
        member_id=member.id if member else None,
        total=body["total"],
        rules_version=ctx.item.rules_version,
        offline=bool(body.get("offline")),
        authorization_id=body.get("authorization_id"),
        occurred_at=ctx.item.occurred_at,
        occurred_utc=Sale.utc_of(ctx.item.occurred_at, ctx.now),  # -- operations
        body=body,
        ingested_at=ctx.now,
        **staff_programme.sale_credit(body, member, ctx.cache.goods),  # -- staff
    )
    ctx.cache.known_sales.add(sale_id)
    ctx.cache.sales[sale_id] = SaleOnRecord(ctx.item.store, member.id if member else None, body)
    report_summary.book_sale(
        ctx.book, ctx.item.store, ctx.item.occurred_at, body, member
    )  # -- reports
    if member is not None:
        coupon_rules.apply_sale_coupons(ctx, body, member)  # coupons (issue 11)
        _settle_authorization(ctx, sale_id, member)
        posting = ctx.posting("sale", sale_id)
        post_stored_value(member, -principal, -bonus, posting, ctx.book)
        if points_used:
            prefer = [(str(lot), int(n)) for lot, n in body.get("points_lots_used") or []]
            day = _day(ctx.item.occurred_at)  # points: never from lots expired by then
            lock = _rules(ctx).points_lock_days
            spend_points(member, points_used, posting, prefer, ctx.book, on=day, lock_days=lock)
        if earned:
            lot = body.get("points_lot") or {}
            day = _day(ctx.item.occurred_at)
            earned_on = _date(lot.get("earned_on")) or day
            expires_on = _date(lot.get("expires_on")) or expiry_for(_rules(ctx), earned_on)
            credit_points(
                member,
                earned,
                posting,
                lot.get("lot_id") or f"{sale_id}:earn",
                earned_on,
                expires_on,
                ctx.book,
            )
        add_spend(ctx.book, member.id, _day(ctx.item.occurred_at), paid_fen(body, "total"), 1)
        touch_through(member, ctx.item.store, ctx.item.seq, ctx.book)
        ctx.changes.member(member.id)


def _settle_authorization(ctx: ItemContext, sale_id: str, member: Member) -> None:
    auth = ctx.cache.held_auths.pop(sale_id, None)
    if auth is None:
        return
    auth.status = "settled"
    auth.save(only=[Authorization.status])
    for code in auth.coupons or []:
        coupon = Coupon.get_or_none(Coupon.code == code)
        if coupon is not None:
            coupon.status = "used"
            coupon.save(only=[Coupon.status])
            ctx.changes.add("coupon", coupon.code, coupon_state(coupon))


def apply_return(ctx: ItemContext, body: dict[str, Any]) -> None:
    return_id = body["return_id"]
    if return_id in ctx.cache.known_returns:
        raise Conflict(f"return {return_id} was already ingested", field="return_id")
    sale = check_return(ctx, body)  # before anything is posted
    coupon_rules.return_coupons(ctx, body, sale)  # coupons (issue 11): a full return's back
    member = _member_for(ctx, sale.member_id)
    ctx.cache.known_returns.add(return_id)
    ctx.cache.returns_of.setdefault(body["sale_id"], []).append(body)
    ctx.book.insert(
        Return,
        return_id=return_id,
        sale_id=body["sale_id"],
        store=ctx.item.store,
        seq=ctx.item.seq,
        member_id=member.id if member else None,
        refund_total=body["refund_total"],
        occurred_at=ctx.item.occurred_at,
        body=body,
        ingested_at=ctx.now,
    )
    report_summary.book_return(
        ctx.book, ctx.item.store, ctx.item.occurred_at, body, member
    )  # -- reports
    if member is None:
        return
    posting = ctx.posting("return", return_id)
    principal, bonus = _split(body)
    post_stored_value(member, principal, bonus, posting, ctx.book)
    day = _day(ctx.item.occurred_at)
    restored = _int(body, "points_restored")
    pairs = [(str(lot), int(n)) for lot, n in body.get("points_lots_restored") or []]
    for lot_id, n in pairs:
        credit_points(member, n, posting, lot_id, day, expiry_for(_rules(ctx), day), ctx.book)
    rest = restored - sum(n for _, n in pairs)
    if rest > 0:
        credit_points(
            member,
            rest,
            posting,
            f"{return_id}:restore",
            day,
            expiry_for(_rules(ctx), day),
            ctx.book,
        )
    # ``points_reversed`` is the whole reversal; ``points_debt`` is only the part of it no
    # lot covered at the till. HQ takes the reversal from its own lots (the sale's lot
    # first); what they do not cover is HQ's points debt, the same figure the till keeps,
    # recovered from the member's next earnings (a debt, not an overdraft to act on).
    reversed_points = _int(body, "points_reversed")
    if reversed_points:
        own_lot = [(f"{body['sale_id']}:earn", reversed_points)]
        spend_points(member, reversed_points, posting, own_lot, ctx.book, debt_is_overdraft=False)
    add_spend(ctx.book, member.id, day, -paid_fen(body, "refund_total"), 0)  # tiers: growth
    touch_through(member, ctx.item.store, ctx.item.seq, ctx.book)
    ctx.changes.member(member.id)


def apply_topup(ctx: ItemContext, body: dict[str, Any]) -> None:
    topup_id = body["topup_id"]
    if topup_id in ctx.cache.known_topups:
        raise Conflict(f"top-up {topup_id} was already ingested", field="topup_id")
    principal, bonus = _int(body, "principal"), _int(body, "bonus")
    check_topup(ctx, principal, bonus)
    programme_cards.check_topup_upgrade(ctx, body)  # -- cards: 充值升级
    member = _member_for(ctx, body["member_id"])
    assert member is not None  # noqa: S101 - member_id is required by the envelope
    ctx.cache.known_topups.add(topup_id)
    ctx.book.insert(
        TopUp,
        topup_id=topup_id,
        store=ctx.item.store,
        seq=ctx.item.seq,
        member_id=member.id,
        principal=principal,
        bonus=bonus,
        occurred_at=ctx.item.occurred_at,
        body=body,
        ingested_at=ctx.now,
    )
    post_stored_value(member, principal, bonus, ctx.posting("topup", topup_id), ctx.book)
    programme_cards.apply_topup_upgrade(ctx, body, member)  # -- cards: 充值升级
    touch_through(member, ctx.item.store, ctx.item.seq, ctx.book)
    ctx.changes.member(member.id)


def apply_registration(ctx: ItemContext, body: dict[str, Any]) -> None:
    rules = _rules(ctx)
    body = upkeep.registration_with_score(body, rules)  # upkeep: HQ's completeness score
    member = register_member(
        ctx.db, body, ctx.item.store, ctx.item.seq, ctx.now, ctx.changes, ctx.book
    )
    report_summary.book_registration(ctx.book, body, ctx.item.store, member)  # -- reports
    apply_registration_consent(ctx, body, body["member_id"])
    staff_programme.note_registration(ctx, body)  # -- staff: recruiter; maintainer checked
    upkeep.credit_referral(ctx, body, rules)  # upkeep: the referrer's points


APPLIERS = {
    "sale": apply_sale,
    "return": apply_return,
    "topup": apply_topup,
    "registration": apply_registration,
    "consent": apply_consent,
    # ---- programme kinds (issue 11), one block per part:
    # -- tiers (tiers, growth value, member day)
    "rules_status": apply_rules_status,
    # -- cards (card types as products, card replacement)
    "card_sale": programme_cards.apply_card_sale,
    "card_replace": programme_cards.apply_card_replace,
    "card_block": programme_cards.apply_card_block,
    # -- points (points rules, gifts, referral)
    "gift_redemption": apply_gift_redemption,
    # -- coupons (coupons)
    "coupon_issue": coupon_rules.apply_coupon_issue,
    # -- upkeep (stored value, profile, password)
    "sv_refund": upkeep.apply_sv_refund,
    "member_update": upkeep.apply_member_update,
    "member_password": upkeep.apply_member_password,
    # -- staff (maintainers, categories and cost)
    "staff_decision": staff_programme.apply_staff_decision,
    "staff_request": staff_programme.apply_staff_request,
    # ---- end of programme kinds
    # -- shifts and day close (issue 13): kept, and compared with what HQ holds
    "shift_close": shifts.apply_shift_close,
    "day_close": shifts.apply_day_close,
    # -- follow-ups (issue 14): a call's outcome from a till
    "followup_outcome": followup_tasks.apply_followup_outcome,
}


# ---- re-pricing ---------------------------------------------------------------------


def _rules(ctx: ItemContext) -> Rules:
    return ctx.cache.rules_for(ctx.item.rules_version) or DEMO_RULES


def reprice(rules: Rules, body: dict[str, Any], day: dt.date | None = None) -> PricedBasket:
    """The basket priced again with the rules version the till named, on the sale's
    business day ``day`` (its member-day rate); refused if the till's total, any other
    basket figure or any line differs."""
    try:
        pi = body["pricing_input"]
        lines = [LineInput(**line) for line in pi["lines"]]
        member = MemberContext(**pi["member"]) if pi.get("member") else None
        priced = price_basket(
            rules,
            lines,
            member,
            pi.get("order_discount_rate", 1000),
            pi.get("manual_adjustment", 0),
            pi.get("rounding") or None,
            coupon_rules.pricing_coupons(pi),
            day=day,
        )
    except (HuiyuanError, KeyError, TypeError, ValueError) as exc:
        message = exc.message if isinstance(exc, HuiyuanError) else str(exc)
        raise _refused("pricing_input", f"总部无法重新计价 (cannot re-price: {message})") from None
    for name in REPRICE_FIELDS:
        if body.get(name) != getattr(priced, name):
            raise _refused(
                name,
                f"与总部按规则版本 {rules.version} 重新计价不符 "
                f"({name}: till {body.get(name)}, HQ {getattr(priced, name)})",
            )
    till_lines = {line.get("line_no"): line.get("amount") for line in body["lines"]}
    hq_lines = {line.line_no: line.amount for line in priced.lines}
    if till_lines != hq_lines:
        raise _refused(
            "lines", f"商品行金额与总部重新计价不符 (lines: till {till_lines}, HQ {hq_lines})"
        )
    return priced


# ---- money checks -------------------------------------------------------------------
# HQ never takes a store's word for money (docs/protocol.md, "Money checks", is this
# section as a table). Each check runs before the item posts anything and refuses the
# whole item (apply_failed, dead-lettered and acknowledged as refused); signs, types and
# bounds were already checked by core.protocol.validate_item (invalid).


class MoneyRefused(ValidationError):
    """An item whose money does not add up, refused before it wrote anything: the
    ingest rejects it in place (apply_failed) instead of running the batch again."""


def _refused(name: str, message: str) -> MoneyRefused:
    return MoneyRefused(message, field=name)


def _by_kind(tenders: list[dict[str, Any]]) -> dict[str, int]:
    return sum_by_kind((tender["kind"], tender["amount"]) for tender in tenders)


def _known_rules(ctx: ItemContext) -> Rules | None:
    """The item's rules version, or None after noting (once per store and version, while
    that exception is open) that HQ does not hold it."""
    version = ctx.item.rules_version
    rules = ctx.cache.rules_for(version)
    if rules is not None:
        return rules
    key = (ctx.item.store, version)
    if key in ctx.cache.unknown_rules_noted:
        return None
    ctx.cache.unknown_rules_noted.add(key)
    noted = HqException.select(HqException.id).where(
        (HqException.kind == "unknown_rules")
        & (HqException.store == ctx.item.store)
        & (HqException.ref == str(version))
        & (HqException.status == "open")
    )
    if not noted.exists():
        ctx.open_exception(
            "unknown_rules",
            str(version),
            {
                "reason": f"门店按总部没有的规则版本 {version} 计价 "
                f"(store {ctx.item.store} prices with rules version {version}, which HQ "
                "does not hold: its sales are checked without re-pricing, points earned "
                "and top-up bonuses cannot be checked)",
            },
        )
    return None


def check_sale(ctx: ItemContext, body: dict[str, Any]) -> None:
    """Every amount, sign, split and points figure of a sale, against its rules version."""
    rules = _known_rules(ctx)
    priced = reprice(rules, body, _day(ctx.item.occurred_at)) if rules is not None else None
    coupon_rules.check_sale_coupons(ctx, body, priced)  # coupons (issue 11)
    total = body["total"]
    paid = _by_kind(body["tenders"])
    if sum(paid.values()) != total:
        raise _refused(
            "tenders",
            f"支付合计与应付不符 (tenders add up to {sum(paid.values())}, total is {total})",
        )
    sv = body["stored_value"]
    if sv["principal"] + sv["bonus"] != paid.get("stored_value", 0):
        raise _refused(
            "stored_value",
            f"储值本金加赠送与储值支付不符 (stored_value {sv['principal']} + {sv['bonus']} "
            f"≠ stored_value tenders {paid.get('stored_value', 0)})",
        )
    points_fen, points_used = paid.get("points", 0), body["points_used"]
    if rules is not None:
        needed = points_for_fen(rules, points_fen)
        if points_used != needed:
            raise _refused(
                "points_used",
                f"使用积分与积分抵扣金额不符 (points_used {points_used}, the points tender of "
                f"{points_fen} fen takes {needed} under rules version {rules.version})",
            )
    elif (points_used > 0) != (points_fen > 0):
        raise _refused(
            "points_used",
            f"使用积分与积分抵扣不符 (points_used {points_used}, points tender {points_fen})",
        )
    lots_named = sum(n for _, n in body["points_lots_used"])
    if lots_named > points_used:
        raise _refused(
            "points_lots_used",
            f"积分批次合计超过使用积分 (points_lots_used name {lots_named} > {points_used})",
        )
    member = body["pricing_input"].get("member")
    if body["member_id"] is None:
        if member is not None or sv["principal"] or sv["bonus"] or points_used:
            raise _refused(
                "member_id", "没有会员的销售不能动用余额 (a sale without a member moves no balance)"
            )
        if body["points_earned"]:
            raise _refused(
                "points_earned", "没有会员的销售不能积分 (points_earned without a member)"
            )
        return
    if member is None or member["member_id"] != body["member_id"]:
        raise _refused(
            "pricing_input",
            "计价会员与销售会员不符 (pricing_input.member is not the sale's member_id)",
        )
    if priced is not None:
        due = sale_points_earned(
            rules,
            member.get("card_type"),
            priced.points_base,
            priced.total,
            points_fen,
            _day(ctx.item.occurred_at),
        )
        if body["points_earned"] != due:
            raise _refused(
                "points_earned",
                f"积分与规则不符 (points_earned {body['points_earned']}, rules version "
                f"{rules.version} give {due} for a points base of {priced.points_base} fen, "
                f"{points_fen} of the total {priced.total} paid with points)",
            )


def check_return(ctx: ItemContext, body: dict[str, Any]) -> SaleOnRecord:
    """A return against the sale it names and that sale's earlier returns: lines within
    what is left, the refund, its tenders, the stored value split and the points are what
    the till's own rules give (edge/services/sales.py ``return_sale``)."""
    sale_id = body["sale_id"]
    sale = ctx.cache.sales.get(sale_id)
    if sale is None:
        raise _refused(
            "sale_id", f"总部没有这张小票, 不能退货 (return of sale {sale_id}, unknown to HQ)"
        )
    if sale.store != ctx.item.store:
        raise _refused(
            "sale_id",
            f"只能退本店的小票 (sale {sale_id} was made at {sale.store}, not {ctx.item.store})",
        )
    if body["member_id"] != sale.member_id and not (
        body["member_id"]
        and sale.member_id
        and _same_member(ctx, body["member_id"], sale.member_id)
    ):
        raise _refused("member_id", f"退货会员与原销售不符 (member_id is not sale {sale_id}'s)")
    earlier = ctx.cache.returns_of.get(sale_id, [])
    sold = {line["line_no"]: line for line in sale.body["lines"]}
    returned = {n: 0 for n in sold}
    for ret in earlier:
        for line in ret["lines"]:
            returned[line["line_no"]] = returned.get(line["line_no"], 0) + line["qty"]
    eligible_total = sum(line["amount"] for line in sold.values() if line["earns_points"])
    eligible_before = sum(
        share_of(line["amount"], returned[n], line["qty"])
        for n, line in sold.items()
        if line["earns_points"]
    )
    eligible_now = refund = 0
    seen: set[int] = set()
    for line in body["lines"]:
        n, qty = line["line_no"], line["qty"]
        sl = sold.get(n)
        if sl is None or n in seen:
            raise _refused(
                "lines",
                f"原小票没有第 {n} 行或重复 (line {n}: not on sale {sale_id} or listed twice)",
            )
        seen.add(n)
        left = sl["qty"] - returned[n]
        if qty > left:
            raise _refused(
                "lines", f"第 {n} 行最多可退 {left} 件 (line {n}: {qty} asked, {left} left)"
            )
        due = share_of(sl["amount"], qty, sl["qty"], returned[n])
        if line["amount"] != due:
            raise _refused(
                "lines",
                f"第 {n} 行退款应为 {due} 分 (line {n}: amount {line['amount']}, due {due})",
            )
        refund += due
        if sl["earns_points"]:
            eligible_now += due
    if body["refund_total"] != refund:
        raise _refused(
            "refund_total",
            f"退款合计应为 {refund} 分 (refund_total {body['refund_total']}, lines {refund})",
        )
    paid = _by_kind(sale.body["tenders"])
    before = _by_kind([t for ret in earlier for t in ret["tenders"]])
    back = _by_kind(body["tenders"])
    for kind, amount in back.items():
        left = paid.get(kind, 0) - before.get(kind, 0)
        if amount > left:
            raise _refused(
                "tenders",
                f"{kind} 退款超过可退 (tenders: {amount} to {kind}, {left} left of the sale)",
            )
    if sum(back.values()) != refund:
        raise _refused(
            "tenders",
            f"退款方式合计与退款不符 (tenders add up to {sum(back.values())}, refund is {refund})",
        )
    spent = sale.body["stored_value"]
    sv_back = back.get("stored_value", 0)
    split = (
        refund_split(
            Split(spent["principal"], spent["bonus"]),
            sv_back,
            paid["stored_value"],
            before.get("stored_value", 0),
        )
        if sv_back
        else Split(0, 0)
    )
    sv = body["stored_value"]
    if (sv["principal"], sv["bonus"]) != (split.principal, split.bonus):
        raise _refused(
            "stored_value",
            f"储值退回拆分应为本金 {split.principal} 赠送 {split.bonus} (stored_value "
            f"{sv['principal']}/{sv['bonus']}, the sale's split gives {split.principal}/{split.bonus})",
        )
    used, points_back = sale.body["points_used"], back.get("points", 0)
    restored = (
        share_of(used, points_back, paid["points"], before.get("points", 0))
        if used and points_back
        else 0
    )
    if body["points_restored"] != restored:
        raise _refused(
            "points_restored",
            f"退回积分应为 {restored} (points_restored {body['points_restored']}, due {restored})",
        )
    if sum(n for _, n in body["points_lots_restored"]) > restored:
        raise _refused(
            "points_lots_restored",
            "积分批次合计超过退回积分 (points_lots_restored > points_restored)",
        )
    earned = sale.body["points_earned"]
    reversed_due = (
        share_of(earned, eligible_now, eligible_total, eligible_before)
        if earned and eligible_total
        else 0
    )
    if body["points_reversed"] != reversed_due:
        raise _refused(
            "points_reversed",
            f"扣回积分应为 {reversed_due} (points_reversed {body['points_reversed']}, due {reversed_due})",
        )
    if body["points_debt"] > body["points_reversed"]:
        raise _refused("points_debt", "积分欠款超过扣回积分 (points_debt > points_reversed)")
    return sale


def _same_member(ctx: ItemContext, one: str, other: str) -> bool:
    """Whether two member ids are one live member (a merge may have joined them)."""
    try:
        return ctx.book.member(one).id == ctx.book.member(other).id
    except NotFound:
        return False


def check_topup(ctx: ItemContext, principal: int, bonus: int) -> None:
    """The bonus must be exactly what the rules give for the principal (the till computes
    it with ``core.stored_value.topup_split``; any other figure is money the rules did not
    give). Without the rules HQ cannot check a bonus, so only a top-up without one posts."""
    rules = _known_rules(ctx)
    due = rules.topup_bonus(principal) if rules is not None else 0
    if bonus != due:
        why = (
            f"rules version {rules.version} give {due}"
            if rules
            else (f"HQ has no rules version {ctx.item.rules_version} to check it")
        )
        raise _refused("bonus", f"充值赠送与规则不符 (bonus {bonus} for {principal}: {why})")


def _strings(value: Any) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) and value else ()


def _date(text: Any) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(str(text)[:10])
    except ValueError:
        return None


def _day(occurred_at: str) -> dt.date:
    try:
        return dt.datetime.fromisoformat(occurred_at).date()
    except ValueError:
        return dt.date.today()
