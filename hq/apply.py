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
from core.points import expiry_for
from core.pricing import LineInput, MemberContext, price_basket
from core.protocol import UpItem
from core.rules import DEMO_RULES, Rules
from hq.changes import ChangeSet, coupon_state
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

REPRICE_FIELDS = (
    "subtotal",
    "member_discount",
    "order_discount",
    "manual_adjustment",
    "rounding",
    "total",
)


@dataclass
class BatchCache:
    """What one batch's items share: the book, rules by version, ids known to exist."""

    book: Book
    rules: dict[int, Rules | None] = field(default_factory=dict)
    known_sales: set[str] = field(default_factory=set)
    known_topups: set[str] = field(default_factory=set)
    held_auths: dict[str, Authorization] = field(default_factory=dict)

    def prefetch(self, store: str, items: list[Any]) -> None:
        """Read what the batch's items will look up with one query per table (members and
        lots are loaded by the book on first use), instead of one per item."""
        members: set[str] = set()
        lots: set[str] = set()
        sale_ids: set[str] = set()
        topup_ids: set[str] = set()
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
            elif kind == "topup":
                topup_ids.update(_strings(body.get("topup_id")))
            elif kind == "registration":
                cards.update(_strings(body.get("card_no")))
                for phone in _strings(body.get("phone")):
                    try:
                        phones.add(normalise_phone(phone))
                    except HuiyuanError:
                        pass  # the item is refused when it is applied
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
    member = _member_for(ctx, body.get("member_id"))
    principal, bonus = _split(body)
    points_used = _int(body, "points_used")
    points_earned = _int(body, "points_earned")
    if member is None and (principal or bonus or points_used or points_earned):
        raise ValidationError("a sale without a member cannot move balances", field="member_id")
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
        body=body,
        ingested_at=ctx.now,
    )
    ctx.cache.known_sales.add(sale_id)
    if member is not None:
        _settle_authorization(ctx, sale_id, member)
        posting = ctx.posting("sale", sale_id)
        post_stored_value(member, -principal, -bonus, posting, ctx.book)
        if points_used:
            prefer = [(str(lot), int(n)) for lot, n in body.get("points_lots_used") or []]
            spend_points(member, points_used, posting, prefer, ctx.book)
        if points_earned:
            lot = body.get("points_lot") or {}
            day = _day(ctx.item.occurred_at)
            earned_on = _date(lot.get("earned_on")) or day
            expires_on = _date(lot.get("expires_on")) or expiry_for(_rules(ctx), earned_on)
            credit_points(
                member,
                points_earned,
                posting,
                lot.get("lot_id") or f"{sale_id}:earn",
                earned_on,
                expires_on,
                ctx.book,
            )
        touch_through(member, ctx.item.store, ctx.item.seq, ctx.book)
        ctx.changes.member(member.id)
    reprice_sale(ctx, body)


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
    if Return.get_or_none(Return.return_id == return_id) is not None:
        raise Conflict(f"return {return_id} was already ingested", field="return_id")
    ctx.book.flush()  # the sale may be in this batch
    sale = Sale.get_or_none(Sale.sale_id == body["sale_id"])
    member = _member_for(ctx, body.get("member_id") or (sale.member_id if sale else None))
    Return.create(
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
    # what the till took back plus what it could not (its debt): HQ's balance is the truth
    take_back = _int(body, "points_reversed") + _int(body, "points_debt")
    if take_back:
        spend_points(member, take_back, posting, [(f"{body['sale_id']}:earn", take_back)], ctx.book)
    touch_through(member, ctx.item.store, ctx.item.seq, ctx.book)
    ctx.changes.member(member.id)


def apply_topup(ctx: ItemContext, body: dict[str, Any]) -> None:
    topup_id = body["topup_id"]
    if topup_id in ctx.cache.known_topups:
        raise Conflict(f"top-up {topup_id} was already ingested", field="topup_id")
    principal, bonus = _int(body, "principal"), _int(body, "bonus")
    if principal <= 0 or bonus < 0:
        raise ValidationError("top-up principal must be positive and bonus not negative")
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
    touch_through(member, ctx.item.store, ctx.item.seq, ctx.book)
    ctx.changes.member(member.id)


def apply_registration(ctx: ItemContext, body: dict[str, Any]) -> None:
    register_member(ctx.db, body, ctx.item.store, ctx.item.seq, ctx.now, ctx.changes, ctx.book)


APPLIERS = {
    "sale": apply_sale,
    "return": apply_return,
    "topup": apply_topup,
    "registration": apply_registration,
}


# ---- re-pricing ---------------------------------------------------------------------


def _rules(ctx: ItemContext) -> Rules:
    return ctx.cache.rules_for(ctx.item.rules_version) or DEMO_RULES


def reprice_sale(ctx: ItemContext, body: dict[str, Any]) -> None:
    """Price the basket again with the rules version the till named; flag any difference."""
    rules = ctx.cache.rules_for(ctx.item.rules_version)
    differences: dict[str, Any] = {}
    if rules is None:
        differences["rules_version"] = f"HQ has no rules version {ctx.item.rules_version}"
    else:
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
            )
        except (HuiyuanError, KeyError, TypeError, ValueError) as exc:
            differences["error"] = f"cannot re-price: {exc}"
        else:
            for name in REPRICE_FIELDS:
                if body.get(name) != getattr(priced, name):
                    differences[name] = {"till": body.get(name), "hq": getattr(priced, name)}
            till_lines = {line.get("line_no"): line.get("amount") for line in body.get("lines", [])}
            hq_lines = {line.line_no: line.amount for line in priced.lines}
            if till_lines != hq_lines:
                differences["lines"] = {"till": till_lines, "hq": hq_lines}
    if differences:
        ctx.book.insert(
            HqException,
            kind="reprice_mismatch",
            member_id=body.get("member_id"),
            store=ctx.item.store,
            seq=ctx.item.seq,
            ref=body.get("sale_id"),
            details=differences,
            created_at=ctx.now,
            status="open",
            balance=None,
            amount=0,
            recovered=0,
            closed_at=None,
        )


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
