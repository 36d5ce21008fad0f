"""The console's Members (会员) screens: the search (``/members?q=``) and a member's page
(``/members/<id>``) with its actions, each by role (hq/access/roles.py):

- edit the profile (members.edit): hq.programme.upkeep.edit_member
- block or unblock a card (cards.block): hq.services.block_card
- merge two members (members.merge): hq.services.staff_merge
- adjust points (members.adjust): hq.programme.points.adjust_points
- clear stored value, 储值清零 (members.adjust): hq.programme.upkeep.clear_stored_value;
  HQ has no other stored value movement (a top-up or refund happens at a till), so the
  console offers none

Each action is audited by its service with the signed-in account as the actor, and its
changes are pushed to the stores as the CLI does (best effort; stores page the change
log anyway). A store or area manager sees only members registered at their stores.
Personal data is masked per role (hq/access/masking.py); a full phone number only
through the audited POST /api/members/<id>/reveal-phone.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

import peewee as pw
from flask import Blueprint, current_app, jsonify, redirect, request, url_for

from core.errors import HuiyuanError, ValidationError
from hq import services
from hq.access.guard import current, requires
from hq.access.masking import mask_phone, member_for
from hq.changes import member_state
from hq.console import render
from hq.console.operations import ops_time
from hq.member_search import (
    MAX_RESULTS,
    SearchPage,
    cards_of,
    clean_query,
    search_members,
)
from hq.models import (
    Card,
    CardTypeChange,
    Coupon,
    LedgerEntry,
    Member,
    MemberConsent,
    Merge,
    PointsLot,
    Sale,
    StaffMember,
    Store,
    TierChange,
    utcnow,
)

bp = Blueprint("console_members", __name__, template_folder="templates")

LEDGER_PAGE = 20
SALES_PAGE = 20
HISTORY_ROWS = 50  # tier, card type, coupon, merge and consent rows shown (newest)
MAX_PAGE = 10_000

LEDGER_REASONS = {
    "sale": "消费",
    "return": "退货",
    "topup": "充值",
    "debt": "欠款",
    "adjust": "调整",
    "expire": "过期",
    "sv_refund": "储值退款",
    "sv_clear": "储值清零",
    "referral": "推荐奖励",
    "gift": "兑换礼品",
}
BALANCES = {"stored_value": "储值", "points": "积分"}
TIER_REASONS = {"upgrade": "升级", "downgrade": "降级", "decay": "保级失败", "manual": "手动"}
CARD_TYPE_REASONS = {
    "sale": "购卡",
    "renewal": "续卡",
    "upgrade": "充值升级",
    "lapse": "到期",
    "manual": "手动",
    "merge": "合并",
}
MERGE_REASONS = {"same_phone": "同手机号", "manual": "人工合并"}
CHANNELS = {"sms": "短信", "wechat": "微信", "call": "电话"}
STATUSES = {"active": "正常", "merged": "已合并", "erased": "已删除个人信息", "blocked": "已挂失"}
# what a finished action says on the page it returns to (?done=...), never free text
DONE = {
    "edit": "会员资料已保存",
    "edit-none": "资料没有变化",
    "block": "卡已挂失",
    "unblock": "卡已解挂",
    "merge": "会员已合并",
    "points": "积分已调整",
    "sv-clear": "储值已清零",
}


def _db() -> pw.Database:
    return current_app.extensions["hq_db"]


def _push(changes: list[Any]) -> bool:
    from hq.cli import push_changes

    return push_changes(current_app.config["HQ"], changes)


def _page_arg(name: str) -> int:
    raw = request.args.get(name, "1").strip()
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise ValidationError(f"页码须为 1 到 {MAX_PAGE} (page must be 1..{MAX_PAGE})", field=name)
    return int(raw)


def _id_text(value: str, field: str) -> str:
    if len(value) > 64 or "\x00" in value:
        raise ValidationError(f"{field} 无效 (at most 64 characters, no NUL)", field=field)
    return value


def _member_in_scope(member_id: str) -> Member:
    """The live member for an id (a merged id leads to its survivor), refused (403) to a
    store or area manager when registered at another store."""
    member = services.find_member(_id_text(member_id, "member_id"))
    principal = current()
    if principal.stores is not None:
        principal.require_store(member.registered_store)
    return member


# ---- search --------------------------------------------------------------------------


def result_rows(found: SearchPage) -> list[dict[str, Any]]:
    """The members of a search page as the signed-in principal may see them."""
    principal = current()
    cards = cards_of([m.id for m in found.members])
    rows = []
    for m in found.members:
        shown = member_for(principal, {"name": m.name, "phone": m.phone})
        rows.append(
            {
                "id": m.id,
                "name": shown["name"] or "—",
                "phone": shown["phone"] or "—",
                "cards": [c.card_no for c in cards[m.id]],
                "tier": m.tier,
                "card_type": m.card_type,
                "store": m.registered_store,
                "registered_at": (m.registered_at or "")[:10],
                "points": m.points,
                "stored_value": m.sv_principal + m.sv_bonus,
                "status": m.status,
            }
        )
    return rows


@bp.get("/api/member-search")
@requires("members.read")
def search_json() -> Any:
    """The search page's JSON twin: ``?q=&page=`` -> the same rows, masked alike."""
    found = search_members(request.args.get("q", ""), current().stores, _page_arg("page"))
    return jsonify(
        {
            "q": found.query,
            "page": found.page,
            "pages": found.pages,
            "found": found.found,
            "capped": found.capped,
            "exact": found.exact,
            "members": result_rows(found),
        }
    )


@bp.get("/members")
@requires("members.read")
def search() -> Any:
    principal = current()
    q = request.args.get("q", "")
    try:
        found = search_members(q, principal.stores, _page_arg("page"))
    except ValidationError as exc:
        return render(
            "members.html", 400, q=q[:64], found=None, rows=[], problem=exc.message, limit=0
        )
    rows = result_rows(found)
    # a whole id, card or phone that finds one member opens it
    if found.exact and found.found == 1 and request.args.get("list") != "1":
        return redirect(url_for("console_members.member_page", member_id=rows[0]["id"]))
    return render(
        "members.html",
        q=found.query,
        found=found,
        rows=rows,
        limit=MAX_RESULTS,
        statuses=STATUSES,
        page_url=lambda n: (
            url_for("console_members.search")
            + "?"
            + urlencode({"q": found.query, "page": n, "list": 1})
        ),
    )


# ---- a member's page -------------------------------------------------------------------


def _iso(value: dt.datetime | dt.date | None) -> str:
    """A stored instant (naive UTC) in the chain's time zone, to the minute; a day as is."""
    if value is None:
        return "—"
    if isinstance(value, dt.datetime):
        return ops_time(value)
    return value.isoformat()


def _local(text: str | None) -> str:
    """A till's ISO time with offset as the till wrote it, to the minute."""
    return (text or "—")[:16].replace("T", " ")


def member_view(member: Member, ledger_page: int = 1, sales_page: int = 1) -> dict[str, Any]:
    """Everything the member page shows, masked for the signed-in principal."""
    principal = current()
    state = member_state(
        member,
        list(
            PointsLot.select()
            .where((PointsLot.member_id == member.id) & (PointsLot.remaining > 0))
            .order_by(PointsLot.expires_on, PointsLot.lot_id)
        ),
    )
    state.pop("password_hash", None)
    profile = member_for(principal, state)
    maintainer = None
    if member.staff_code:
        staff = StaffMember.get_or_none(StaffMember.code == member.staff_code)
        maintainer = {
            "code": member.staff_code,
            "name": staff.name if staff else "",
            "store": staff.store if staff else "",
        }
    store = Store.get_or_none(Store.code == member.registered_store)
    ledger_q = LedgerEntry.select().where(LedgerEntry.member_id == member.id)
    ledger_total = ledger_q.count()
    ledger = [
        {
            "at": _iso(e.at),
            "balance": BALANCES.get(e.balance, e.balance),
            "kind": e.balance,
            "reason": LEDGER_REASONS.get(e.reason, e.reason),
            "code": e.reason,
            "principal": e.principal,
            "bonus": e.bonus,
            "points": e.points,
            "ref": e.ref or "",
            "store": e.store or "总部",
        }
        for e in ledger_q.order_by(LedgerEntry.at.desc(), LedgerEntry.id.desc()).paginate(
            ledger_page, LEDGER_PAGE
        )
    ]
    sales_q = Sale.select().where(Sale.member_id == member.id)
    sales_total = sales_q.count()
    sales = [
        {
            "sale_id": s.sale_id,
            "store": s.store,
            "at": _local(s.occurred_at),
            "total": s.total,
            "offline": s.offline,
            "served_by": s.served_by or "",
        }
        for s in sales_q.order_by(Sale.occurred_at.desc(), Sale.sale_id).paginate(
            sales_page, SALES_PAGE
        )
    ]
    merges = [
        {
            "from": m.from_member,
            "to": m.to_member,
            "direction": "in" if m.to_member == member.id else "out",
            "store": m.store or "总部",
            "staff": m.staff or "",
            "reason": MERGE_REASONS.get(m.reason, m.reason),
            "at": _iso(m.at),
        }
        for m in Merge.select()
        .where((Merge.to_member == member.id) | (Merge.from_member == member.id))
        .order_by(Merge.at.desc())
        .limit(HISTORY_ROWS)
    ]
    return {
        "member": member,
        "profile": profile,
        "phone_masked": mask_phone(member.phone) or "—",
        "store": store,
        "maintainer": maintainer,
        "cards": list(Card.select().where(Card.member_id == member.id).order_by(Card.card_no)),
        "tier_changes": [
            {
                "at": _iso(t.at),
                "day": _iso(t.day),
                "from": t.from_tier or "—",
                "to": t.to_tier or "—",
                "reason": TIER_REASONS.get(t.reason, t.reason),
                "growth": t.growth,
                "by": t.by or "",
            }
            for t in TierChange.select()
            .where(TierChange.member_id == member.id)
            .order_by(TierChange.at.desc(), TierChange.id.desc())
            .limit(HISTORY_ROWS)
        ],
        "card_type_changes": [
            {
                "at": _iso(c.at),
                "from": c.from_type or "—",
                "to": c.to_type,
                "expires_on": _iso(c.expires_on),
                "reason": CARD_TYPE_REASONS.get(c.reason, c.reason),
                "store": c.store or "总部",
                "by": c.by or "",
            }
            for c in CardTypeChange.select()
            .where(CardTypeChange.member_id == member.id)
            .order_by(CardTypeChange.at.desc(), CardTypeChange.id.desc())
            .limit(HISTORY_ROWS)
        ],
        "lots": state["points_lots"],
        "ledger": ledger,
        "ledger_page": ledger_page,
        "ledger_pages": max(1, -(-ledger_total // LEDGER_PAGE)),
        "ledger_total": ledger_total,
        "sales": sales,
        "sales_page": sales_page,
        "sales_pages": max(1, -(-sales_total // SALES_PAGE)),
        "sales_total": sales_total,
        "coupons": list(
            Coupon.select()
            .where(Coupon.member_id == member.id)
            .order_by(Coupon.issued_at.desc(nulls="LAST"), Coupon.code)
            .limit(HISTORY_ROWS)
        ),
        "merges": merges,
        "merged_from": [
            m.id for m in Member.select(Member.id).where(Member.merged_into == member.id)
        ],
        "consents": [
            {
                "channel": CHANNELS.get(c.channel, c.channel),
                "granted": c.granted,
                "at": _iso(c.at),
                "store": c.store or "总部",
                "source": c.source,
                "by": c.by or "",
            }
            for c in MemberConsent.select()
            .where(MemberConsent.member_id.in_([member.id, *_merged_ids(member.id)]))
            .order_by(MemberConsent.at.desc(), MemberConsent.id.desc())
            .limit(HISTORY_ROWS)
        ],
        "statuses": STATUSES,
        "can": {
            "edit": principal.can("members.edit")
            and principal.can("members.pii")
            and member.status == "active",
            "block": principal.can("cards.block"),
            "merge": principal.can("members.merge") and member.status == "active",
            "adjust": principal.can("members.adjust") and member.status == "active",
            "reveal": principal.can("members.reveal") and bool(member.phone),
            "pii": principal.can("members.pii"),
        },
    }


def _merged_ids(member_id: str) -> list[str]:
    return [m.id for m in Member.select(Member.id).where(Member.merged_into == member_id)]


def _show(member: Member, status: int = 200, problem: str | None = None, **extra: Any) -> Any:
    done = request.args.get("done", "")
    return render(
        "member.html",
        status,
        notice=DONE.get(done),
        problem=problem,
        form=extra.pop("form", {}),
        **member_view(member, _page_arg("lp"), _page_arg("sp")),
        **extra,
    )


@bp.get("/members/<member_id>")
@requires("members.read")
def member_page(member_id: str) -> Any:
    member = _member_in_scope(member_id)
    if member.id != member_id:  # a merged id (or a card or phone): the survivor's own URL
        return redirect(url_for("console_members.member_page", member_id=member.id))
    return _show(member)


def _done(member: Member, what: str) -> Any:
    return redirect(url_for("console_members.member_page", member_id=member.id, done=what))


def _refused(member: Member, exc: HuiyuanError, form: dict[str, str]) -> Any:
    status = exc.http_status if 400 <= exc.http_status < 500 else 400
    return _show(member, status, problem=exc.message, form=form)


def _form(*names: str) -> dict[str, str]:
    return {name: request.form.get(name, "")[:500] for name in names}


# ---- actions ---------------------------------------------------------------------------

EDIT_FIELDS = ("name", "gender", "birthday", "occupation", "notes")


@bp.post("/members/<member_id>/edit")
@requires("members.edit")
def edit(member_id: str) -> Any:
    from hq.programme.upkeep import edit_member

    member = _member_in_scope(member_id)
    form = _form(*EDIT_FIELDS, "phone")
    sets = [f"{name}={form[name].strip()}" for name in EDIT_FIELDS if name in request.form]
    if form["phone"].strip():  # empty: keep the phone (the form never shows it in full)
        sets.append(f"phone={form['phone'].strip()}")
    try:
        applied, changes = edit_member(_db(), member.id, sets, current().actor, utcnow())
    except HuiyuanError as exc:
        return _refused(member, exc, form)
    _push(changes)
    return _done(member, "edit" if applied else "edit-none")


@bp.post("/members/<member_id>/cards/<card_no>/block")
@requires("cards.block")
def block(member_id: str, card_no: str) -> Any:
    member = _member_in_scope(member_id)
    form = _form("blocked", "reason")
    card = Card.get_or_none(
        (Card.card_no == _id_text(card_no, "card_no")) & (Card.member_id == member.id)
    )
    try:
        if card is None:
            raise ValidationError(
                f"此会员没有卡 {card_no} (not this member's card)", field="card_no"
            )
        if form["blocked"] not in ("0", "1"):
            raise ValidationError("blocked 须为 0 或 1 (blocked must be 0 or 1)", field="blocked")
        blocked = form["blocked"] == "1"
        reason = form["reason"].strip()
        if not reason:
            raise ValidationError("请填写原因 (a reason is required)", field="reason")
        changes = services.block_card(
            _db(), card.card_no, blocked, reason[:200], utcnow(), by=current().actor
        )
    except HuiyuanError as exc:
        return _refused(member, exc, form)
    _push(changes)
    return _done(member, "block" if blocked else "unblock")


@bp.post("/members/<member_id>/merge")
@requires("members.merge")
def merge(member_id: str) -> Any:
    member = _member_in_scope(member_id)
    form = _form("other", "direction")
    try:
        other_q = clean_query(form["other"])
        if not other_q:
            raise ValidationError(
                "请填写另一位会员的会员号、卡号或手机号 (the other member is required)",
                field="other",
            )
        other = _member_in_scope(other_q)
        if other.id == member.id:
            raise ValidationError("不能与自己合并 (that is this member)", field="other")
        if form["direction"] == "into_this":
            from_id, to_id = other.id, member.id
        elif form["direction"] == "into_other":
            from_id, to_id = member.id, other.id
        else:
            raise ValidationError(
                "请选择合并方向 (choose which member survives)", field="direction"
            )
        _, changes = services.staff_merge(_db(), from_id, to_id, current().actor, utcnow())
    except HuiyuanError as exc:
        return _refused(member, exc, form)
    _push(changes)
    survivor = Member.get_by_id(to_id)
    return _done(survivor, "merge")


@bp.post("/members/<member_id>/points")
@requires("members.adjust")
def adjust(member_id: str) -> Any:
    from hq.programme.points import adjust_points

    member = _member_in_scope(member_id)
    form = _form("delta", "reason")
    raw = form["delta"].strip().replace("+", "", 1)
    now = utcnow()
    try:
        try:
            delta = int(raw)
        except ValueError:
            raise ValidationError(
                "积分调整数量须为整数, 如 100 或 -50 (delta must be a whole number)", field="delta"
            ) from None
        out = adjust_points(
            _db(),
            member.id,
            delta,
            by=current().actor,
            reason=form["reason"],
            today=current_app.config["HQ"].business_day(now),
            now=now,
        )
    except HuiyuanError as exc:
        return _refused(member, exc, form)
    _push(out["changes"])
    return _done(member, "points")


@bp.post("/members/<member_id>/stored-value/clear")
@requires("members.adjust")
def clear_stored_value(member_id: str) -> Any:
    from hq.programme.upkeep import clear_stored_value as clear

    member = _member_in_scope(member_id)
    form = _form("reason")
    try:
        _, changes = clear(_db(), member.id, current().actor, form["reason"], utcnow())
    except HuiyuanError as exc:
        return _refused(member, exc, form)
    _push(changes)
    return _done(member, "sv-clear")
