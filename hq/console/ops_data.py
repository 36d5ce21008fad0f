"""What the console's operations screens read and do (hq/console/operations.py): stores
with their sync state and open problems, sales paged by keyset, a sale as its receipt
showed it, exceptions and dead letters with a resolve workflow.

Every function takes the principal's store set (``None``: the whole chain) and keeps to
it; the views check a single store with ``Principal.require_store`` first.

Resolving is a person's word on an item, kept beside HQ's own status: an exception's
``status`` stays what HQ made it (``open`` until HQ closes it itself, e.g. an overdraft
paid back by later earnings in ``hq.ledger.recover_debt``), so a manual resolve never
stops the automatic recovery nor lets reconciliation open a duplicate. A list's
"待处理" is open and not resolved.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import peewee as pw

from core.days import parse_day
from core.errors import Conflict, NotFound, ValidationError
from core.receipt import sale_line_dicts, sale_tender_dicts
from hq import audit
from hq.access.masking import mask_phone, member_for
from hq.access.roles import Principal
from hq.models import (
    DeadLetter,
    HeldItem,
    HqException,
    Member,
    Return,
    Sale,
    Store,
    one_of,
    utcnow,
)
from hq.services import list_stores

PAGE = 50
MAX_NOTE = 500

# how a person resolved an item (stored as the code, shown as the label)
RESOLUTIONS: dict[str, str] = {
    "verified": "已核实无需处理",
    "backfilled": "已补录",
    "adjusted": "已人工调整",
    "contacted": "已联系门店",
    "other": "其他",
}

EXCEPTION_KINDS: dict[str, str] = {
    "overdraft": "透支",
    "unknown_rules": "未知规则版本",
    "unknown_member": "未知会员",
    "balance_mismatch": "门店余额不符",
    "store_ledger_mismatch": "门店流水不符",
    "ledger_mismatch": "总部余额与流水不符",
    "card_not_in_force": "会员卡不在有效期",
    "coupon_category": "券品类不符",
    "coupon_over_limit": "用券超限",
    "unknown_referrer": "未知推荐人",
    "unknown_maintainer": "未知维护人",
    # -- shifts and day close (hq/shifts.py)
    "day_close_mismatch": "日结与销售不符",
    "shift_mismatch": "交班与销售不符",
}

DEAD_LETTER_CODES: dict[str, str] = {
    "malformed": "无法解析",
    "oversized": "超长",
    "forged": "冒名 (门店不符)",
    "invalid": "内容无效",
    "bad_version": "协议版本不符",
    "unknown_kind": "未知类型",
}

# exception list states: what a person sees, from HQ's status and the resolution
EXCEPTION_STATES = {"open": "待处理", "resolved": "已处理", "closed": "系统已关闭", "all": "全部"}
DEAD_LETTER_STATES = {"open": "待处理", "resolved": "已处理", "all": "全部"}

_CODE = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")
_KIND = re.compile(r"^[a-z_]{1,24}$")
_STAFF = re.compile(r"^[^\s]{1,64}$")


def _bad(message: str, name: str) -> ValidationError:
    return ValidationError(message, field=name)


def store_code(value: str | None, name: str = "store") -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if not _CODE.match(value):
        raise _bad(f"门店编码格式不对 (store must be a store code), got {value[:40]!r}", name)
    return value


def _iso_local(occurred_at: str) -> str:
    """The till's wall-clock time of its ISO instant, to the second (as the receipt)."""
    try:
        return dt.datetime.fromisoformat(occurred_at).replace(tzinfo=None).isoformat(" ", "seconds")
    except (TypeError, ValueError):
        return str(occurred_at)


def _scope(field: pw.Field, stores: frozenset[str] | None) -> pw.Expression | None:
    if stores is None:
        return None
    return one_of(field, sorted(stores)) if stores else pw.SQL("1 = 0")


# ---- stores


def stores_overview(stores: frozenset[str] | None) -> list[dict[str, Any]]:
    """``hq.services.list_stores`` with each store's open exceptions and dead letters."""
    rows = list_stores(stores)
    exc = dict(
        HqException.select(HqException.store, pw.fn.COUNT(HqException.id))
        .where((HqException.status == "open") & HqException.resolved_at.is_null())
        .group_by(HqException.store)
        .tuples()
    )
    dead = dict(
        DeadLetter.select(DeadLetter.store, pw.fn.COUNT(DeadLetter.id))
        .where(DeadLetter.resolved_at.is_null())
        .group_by(DeadLetter.store)
        .tuples()
    )
    for row in rows:
        row["open_exceptions"] = exc.get(row["code"], 0)
        row["open_dead_letters"] = dead.get(row["code"], 0)
        row["last_seen_at"] = _parse_iso(row["last_seen"])
    return rows


def _parse_iso(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.removesuffix("Z")) if text else None


def store_detail(code: str) -> dict[str, Any]:
    store = Store.get_or_none(Store.code == code)
    if store is None:
        raise NotFound(f"门店不存在: {code} (no such store)", field="store")
    row = stores_overview(frozenset({code}))[0]
    row["held"] = list(
        HeldItem.select(HeldItem.epoch, HeldItem.seq, HeldItem.received_at)
        .where(HeldItem.store == code)
        .order_by(HeldItem.epoch, HeldItem.seq)
        .limit(20)
        .dicts()
    )
    row["created_at"] = store.created_at
    row["rules_status_at"] = store.rules_status_at
    return row


# ---- sales


@dataclass(frozen=True)
class SaleFilters:
    store: str | None = None
    day_from: dt.date | None = None
    day_to: dt.date | None = None
    member: str | None = None  # the query as typed (id, card or phone)
    member_id: str | None = None  # what it found
    staff: str | None = None
    after: tuple[dt.datetime, str] | None = None  # keyset: the last row of the page before

    def query_args(self) -> dict[str, str]:
        out = {}
        for key, value in (
            ("store", self.store),
            ("from", self.day_from.isoformat() if self.day_from else None),
            ("to", self.day_to.isoformat() if self.day_to else None),
            ("member", self.member),
            ("staff", self.staff),
        ):
            if value:
                out[key] = value
        return out


def encode_cursor(at: dt.datetime, sale_id: str) -> str:
    raw = f"{at.isoformat()}|{sale_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str | None) -> tuple[dt.datetime, str] | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        if len(text) > 200:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        at, sale_id = raw.split("|", 1)
        when = dt.datetime.fromisoformat(at)
        if when.tzinfo is not None or not sale_id or len(sale_id) > 64:
            raise ValueError("bad cursor")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _bad(
            "分页参数无效, 请从第一页重新打开 (after is not a page cursor)", "after"
        ) from None
    return when, sale_id


def sale_filters(args: dict[str, str], principal: Principal) -> SaleFilters:
    """The list's filters from a query string, checked; a store the principal may not see
    is refused (403), a bad value is a 400."""
    from hq.services import find_member

    store = store_code(args.get("store"))
    if store is not None:
        principal.require_store(store)
    day_from = parse_day((args.get("from") or "").strip(), "from")
    day_to = parse_day((args.get("to") or "").strip(), "to")
    if day_from and day_to and day_from > day_to:
        raise _bad("开始日期晚于结束日期 (from is after to)", "from")
    member = (args.get("member") or "").strip()[:64] or None
    member_id = None
    if member:
        try:
            member_id = find_member(member).id
        except NotFound:
            member_id = ""  # nobody: an empty list with a notice
    staff = (args.get("staff") or "").strip() or None
    if staff is not None and not _STAFF.match(staff):
        raise _bad("员工编码格式不对 (staff must be a staff code)", "staff")
    return SaleFilters(
        store, day_from, day_to, member, member_id, staff, decode_cursor(args.get("after"))
    )


def _day_start_utc(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    local = dt.datetime.combine(day, dt.time(), tzinfo=zone)
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def list_sales(
    f: SaleFilters,
    stores: frozenset[str] | None,
    zone: ZoneInfo,
    page: int = PAGE,
    principal: Principal | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of sales, newest first, and the cursor of the next page (or None)."""
    if f.member_id == "":
        return [], None  # the member typed is nobody
    query = sales_query(f, stores, zone).limit(page + 1)
    rows = list(query.dicts())
    more = len(rows) > page
    rows = rows[:page]
    returned = _returned_sales([r["sale_id"] for r in rows])
    members = _members_shown([r["member_id"] for r in rows if r["member_id"]], principal)
    for r in rows:
        r["local_time"] = _iso_local(r["occurred_at"])
        r["returned"] = r["sale_id"] in returned
        r["member"] = members.get(r["member_id"]) if r["member_id"] else None
    cursor = encode_cursor(rows[-1]["occurred_utc"], rows[-1]["sale_id"]) if more else None
    return rows, cursor


def sales_query(f: SaleFilters, stores: frozenset[str] | None, zone: ZoneInfo) -> pw.Query:
    """The list's query, newest first, without its limit. Keyset on (occurred_utc,
    sale_id): the indexes ``sale(occurred_utc, sale_id)`` and ``sale(store, occurred_utc,
    sale_id)`` answer a page in index order, without reading or sorting the rest."""
    query = Sale.select(
        Sale.sale_id,
        Sale.store,
        Sale.seq,
        Sale.member_id,
        Sale.total,
        Sale.offline,
        Sale.occurred_at,
        Sale.occurred_utc,
        Sale.cashier,
        Sale.served_by,
    )
    conds: list[pw.Expression] = [Sale.occurred_utc.is_null(False)]
    scope = _scope(Sale.store, stores)
    if scope is not None:
        conds.append(scope)
    if f.store:
        conds.append(Sale.store == f.store)
    if f.day_from:
        conds.append(Sale.occurred_utc >= _day_start_utc(f.day_from, zone))
    if f.day_to:
        conds.append(Sale.occurred_utc < _day_start_utc(f.day_to + dt.timedelta(days=1), zone))
    if f.member_id:
        conds.append(Sale.member_id == f.member_id)
    if f.staff:
        conds.append(
            (Sale.cashier == f.staff) | (Sale.served_by == f.staff) | (Sale.maintainer == f.staff)
        )
    if f.after:
        conds.append(pw.Tuple(Sale.occurred_utc, Sale.sale_id) < pw.Tuple(*f.after))
    return query.where(*conds).order_by(Sale.occurred_utc.desc(), Sale.sale_id.desc())


def _members_shown(ids: list[str], principal: Principal | None) -> dict[str, str]:
    """Each member of a page as the list shows them: the name as ``principal`` may see
    it and the masked phone (one query for the page)."""
    if not ids or principal is None:
        return {}
    out = {}
    query = Member.select(Member.id, Member.name, Member.phone).where(
        one_of(Member.id, sorted(set(ids)))
    )
    for m in query:
        shown = member_for(principal, {"name": m.name, "phone": m.phone})
        out[m.id] = " ".join(x for x in (shown["name"], shown["phone"]) if x) or m.id[:8]
    return out


def _returned_sales(sale_ids: list[str]) -> set[str]:
    if not sale_ids:
        return set()
    return {
        r[0] for r in Return.select(Return.sale_id).where(one_of(Return.sale_id, sale_ids)).tuples()
    }


def _masked_card(card_no: str | None) -> str:
    if not card_no:
        return ""
    return "*" * max(0, len(card_no) - 4) + card_no[-4:]


def sale_receipt(sale_id: str, principal: Principal) -> dict[str, Any]:
    """A sale as its receipt showed it (core.receipt's line and tender models), with its
    member as ``principal`` may see them, its coupons, points and returns."""
    sale = Sale.get_or_none(Sale.sale_id == sale_id)
    if sale is None:
        raise NotFound(f"销售单不存在: {sale_id[:64]} (no such sale)", field="sale_id")
    principal.require_store(sale.store)
    body = sale.body or {}
    # the sale as the till printed it (core.receipt, the one mapping both sides use)
    change = int(body.get("change") or 0)
    points_used = int(body.get("points_used") or 0)
    lines = sale_line_dicts(body.get("lines") or [], sale.member_id is not None)
    tenders = sale_tender_dicts(body.get("tenders") or [], change, points_used)
    subtotal = int(body.get("subtotal") or 0)
    rounding = int(body.get("rounding") or 0)
    member = None
    if sale.member_id:
        m = Member.get_or_none(Member.id == sale.member_id)
        if m is not None:
            shown = member_for(principal, {"name": m.name, "phone": m.phone})
            member = {
                "id": m.id,
                "name": shown["name"],
                "phone": mask_phone(m.phone),
                "card_no": _masked_card(body.get("card_no")),
                "tier": m.tier or m.card_type or "",
            }
    store = Store.get_or_none(Store.code == sale.store)
    returns = [
        {
            "return_id": r.return_id,
            "local_time": _iso_local(r.occurred_at),
            "refund_total": r.refund_total,
            "lines": [
                {"name": ln.get("name", ""), "qty": ln.get("qty"), "amount": ln.get("amount")}
                for ln in (r.body or {}).get("lines") or []
            ],
            "cashier": (r.body or {}).get("cashier"),
            "approved_by": (r.body or {}).get("approved_by"),
        }
        for r in Return.select().where(Return.sale_id == sale.sale_id).order_by(Return.seq)
    ]
    return {
        "sale_id": sale.sale_id,
        "store": sale.store,
        "store_name": store.name if store else "",
        "seq": sale.seq,
        "local_time": _iso_local(sale.occurred_at),
        "occurred_at": sale.occurred_at,
        "cashier": sale.cashier or body.get("cashier"),
        "served_by": sale.served_by,
        "maintainer": sale.maintainer,
        "member": member,
        "lines": lines,
        "subtotal": subtotal,
        "member_discount": int(body.get("member_discount") or 0),
        "order_discount": int(body.get("order_discount") or 0),
        "coupon_discount": int(body.get("coupon_discount") or 0),
        "discount_total": subtotal - sale.total - rounding,
        "rounding": rounding,
        "total": sale.total,
        "tenders": tenders,
        "change": change,
        "points_used": points_used,
        "points_earned": int(body.get("points_earned") or 0),
        "coupons": [
            {
                "code": c.get("code", ""),
                "template_id": c.get("template_id", ""),
                "discount": c.get("discount"),
            }
            for c in body.get("coupons") or []
        ],
        "offline": sale.offline,
        "rules_version": sale.rules_version,
        "authorization_id": sale.authorization_id,
        "ingested_at": sale.ingested_at,
        "returns": returns,
        "refunded": sum(r["refund_total"] for r in returns),
    }


# ---- exceptions and dead letters


def _after_id(value: str | None) -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        raise _bad("分页参数无效 (after must be a row id)", "after")
    return int(value)


def _state(value: str | None, states: dict[str, str]) -> str:
    value = (value or "open").strip()
    if value not in states:
        raise _bad(f"状态须为 {' / '.join(states)} 之一 (status must be one of them)", "status")
    return value


def exception_filters(args: dict[str, str], principal: Principal) -> dict[str, Any]:
    store = store_code(args.get("store"))
    if store is not None:
        principal.require_store(store)
    kind = (args.get("kind") or "").strip() or None
    if kind is not None and not _KIND.match(kind):
        raise _bad("异常类型格式不对 (kind must be an exception kind)", "kind")
    return {
        "status": _state(args.get("status"), EXCEPTION_STATES),
        "kind": kind,
        "store": store,
        "after": _after_id(args.get("after")),
    }


def list_exceptions(
    f: dict[str, Any], stores: frozenset[str] | None, page: int = PAGE
) -> tuple[list[HqException], int | None]:
    conds: list[pw.Expression] = []
    scope = _scope(HqException.store, stores)
    if scope is not None:
        conds.append(scope)
    status = f["status"]
    if status == "open":
        conds += [HqException.status == "open", HqException.resolved_at.is_null()]
    elif status == "resolved":
        conds.append(HqException.resolved_at.is_null(False))
    elif status == "closed":
        conds += [HqException.status == "closed", HqException.resolved_at.is_null()]
    if f["kind"]:
        conds.append(HqException.kind == f["kind"])
    if f["store"]:
        conds.append(HqException.store == f["store"])
    if f["after"]:
        conds.append(HqException.id < f["after"])
    query = HqException.select()
    if conds:
        query = query.where(*conds)
    rows = list(query.order_by(HqException.id.desc()).limit(page + 1))
    more = len(rows) > page
    rows = rows[:page]
    return rows, (rows[-1].id if more else None)


def dead_letter_filters(args: dict[str, str], principal: Principal) -> dict[str, Any]:
    store = store_code(args.get("store"))
    if store is not None:
        principal.require_store(store)
    code = (args.get("code") or "").strip() or None
    if code is not None and not _KIND.match(code):
        raise _bad("死信原因代码格式不对 (code must be a reason code)", "code")
    return {
        "status": _state(args.get("status"), DEAD_LETTER_STATES),
        "code": code,
        "store": store,
        "after": _after_id(args.get("after")),
    }


def list_dead_letters(
    f: dict[str, Any], stores: frozenset[str] | None, page: int = PAGE
) -> tuple[list[DeadLetter], int | None]:
    conds: list[pw.Expression] = []
    scope = _scope(DeadLetter.store, stores)
    if scope is not None:
        conds.append(scope)
    if f["status"] == "open":
        conds.append(DeadLetter.resolved_at.is_null())
    elif f["status"] == "resolved":
        conds.append(DeadLetter.resolved_at.is_null(False))
    if f["code"]:
        conds.append(DeadLetter.code == f["code"])
    if f["store"]:
        conds.append(DeadLetter.store == f["store"])
    if f["after"]:
        conds.append(DeadLetter.id < f["after"])
    query = DeadLetter.select(
        DeadLetter.id,
        DeadLetter.topic,
        DeadLetter.store,
        DeadLetter.seq,
        DeadLetter.code,
        DeadLetter.reason,
        DeadLetter.payload_size,
        DeadLetter.received_at,
        DeadLetter.resolved_at,
        DeadLetter.resolved_by,
        DeadLetter.resolution,
        DeadLetter.resolution_note,
    )
    if conds:
        query = query.where(*conds)
    rows = list(query.order_by(DeadLetter.id.desc()).limit(page + 1))
    more = len(rows) > page
    rows = rows[:page]
    return rows, (rows[-1].id if more else None)


def get_exception(exc_id: int, principal: Principal) -> HqException:
    row = HqException.get_or_none(HqException.id == exc_id)
    if row is None:
        raise NotFound(f"异常不存在: {exc_id} (no such exception)", field="id")
    principal.require_store(row.store)
    return row


def get_dead_letter(dl_id: int, principal: Principal) -> DeadLetter:
    row = DeadLetter.get_or_none(DeadLetter.id == dl_id)
    if row is None:
        raise NotFound(f"死信不存在: {dl_id} (no such dead letter)", field="id")
    principal.require_store(row.store)
    return row


def payload_preview(row: DeadLetter, limit: int = 4000) -> str:
    return bytes(row.payload[:limit]).decode("utf-8", "replace")


def check_resolution(resolution: Any, note: Any) -> tuple[str, str]:
    if not isinstance(resolution, str) or resolution not in RESOLUTIONS:
        raise _bad(
            "请选择处理方式: "
            + " / ".join(RESOLUTIONS.values())
            + " (resolution must be one of "
            + ", ".join(RESOLUTIONS)
            + ")",
            "resolution",
        )
    if note is None:
        note = ""
    if not isinstance(note, str):
        raise _bad("备注须为文字 (note must be text)", "note")
    note = note.strip()
    if len(note) > MAX_NOTE:
        raise _bad(f"备注不能超过 {MAX_NOTE} 字 (note is too long)", "note")
    if resolution == "other" and not note:
        raise _bad("选择“其他”时须填写备注 (a note is required for other)", "note")
    return resolution, note


def _resolve(
    db: pw.Database,
    model: type[HqException] | type[DeadLetter],
    row_id: int,
    principal: Principal,
    resolution: Any,
    note: Any,
    action: str,
    now: dt.datetime | None,
) -> Any:
    resolution, note = check_resolution(resolution, note)
    now = now or utcnow()
    with db.atomic():
        row = model.get_or_none(model.id == row_id)
        if row is None:
            raise NotFound(f"记录不存在: {row_id} (no such {model.__name__})", field="id")
        principal.require_store(row.store)
        # only the first resolve wins: two people resolving at once never both succeed
        done = (
            model.update(
                resolved_at=now,
                resolved_by=principal.actor,
                resolution=resolution,
                resolution_note=note,
            )
            .where((model.id == row_id) & model.resolved_at.is_null())
            .execute()
        )
        if not done:
            raise Conflict(
                f"已由 {row.resolved_by} 处理 ({RESOLUTIONS.get(row.resolution or '', '')})"
                " (already resolved)",
                field="id",
            )
        audit.record(
            db,
            principal.actor,
            action,
            str(row_id),
            note,
            store=row.store,
            at=now,
            resolution=resolution,
            kind=getattr(row, "kind", None) or getattr(row, "code", None),
        )
    return model.get_by_id(row_id)


def resolve_exception(
    db: pw.Database,
    exc_id: int,
    principal: Principal,
    resolution: Any,
    note: Any,
    now: dt.datetime | None = None,
) -> HqException:
    """Record who resolved an exception, how and why (audited ``exception.resolve``).
    HQ's ``status`` is left as it is: an open overdraft stays open for
    ``recover_debt`` to pay back and close."""
    principal.require("exceptions.resolve")
    return _resolve(db, HqException, exc_id, principal, resolution, note, "exception.resolve", now)


def resolve_dead_letter(
    db: pw.Database,
    dl_id: int,
    principal: Principal,
    resolution: Any,
    note: Any,
    now: dt.datetime | None = None,
) -> DeadLetter:
    """Record who resolved a dead letter, how and why (audited ``dead_letter.resolve``)."""
    principal.require("exceptions.resolve")
    return _resolve(db, DeadLetter, dl_id, principal, resolution, note, "dead_letter.resolve", now)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def resolution_json(row: HqException | DeadLetter) -> dict[str, Any]:
    return {
        "id": row.id,
        "store": row.store,
        "resolved_at": _iso(row.resolved_at),
        "resolved_by": row.resolved_by,
        "resolution": row.resolution,
        "resolution_label": RESOLUTIONS.get(row.resolution or ""),
        "note": row.resolution_note,
        **({"status": row.status} if isinstance(row, HqException) else {}),
    }
