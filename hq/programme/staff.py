"""Staff at HQ: the registry of who may look after members (维护人/专属导购), moving members
between them (a request, the store manager's approval and, across stores, HQ's), handing a
leaving staff member's members over before the account closes, and the figures that credit
sales to the serving staff and to the maintainer (docs/programme/staff.md).

Plain functions taking the database and the time (``now``: naive UTC), each in one
transaction with its audit row and its change records; the CLI (hq/cli_staff.py) and,
later, the console call them. A till's decision on a transfer arrives as the up item
``staff_decision`` (``apply_staff_decision``, called by the ingest).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import peewee as pw

from core.errors import Conflict, Forbidden, NotFound, ValidationError
from hq import audit
from hq.changes import ChangeSet, flush_changes
from hq.models import (
    STAFF_STATUSES,
    HqException,
    MaintainerTransfer,
    Member,
    Product,
    Recruitment,
    Return,
    Sale,
    StaffMember,
    is_postgres,
    one_of,
)

if TYPE_CHECKING:
    from core.protocol import Change

STAFF_CODE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
STAFF_ROLES = ("cashier", "manager", "guide")
OPEN_TRANSFERS = ("pending", "store_approved")
MAX_TRANSFER_MEMBERS = 50_000
SENT_MEMBER_IDS = 200  # member ids a staff_transfer change carries (about 8 KB)


# ---- what goes down -----------------------------------------------------------------


def staff_state(staff: StaffMember) -> dict[str, Any]:
    """A staff member as every store receives it (change entity ``staff``): no PIN, no
    contact, only what a till needs to accept or refuse a maintainer code."""
    return {
        "code": staff.code,
        "name": staff.name,
        "store": staff.store,
        "role": staff.role,
        "status": staff.status,
    }


def transfer_state(t: MaintainerTransfer) -> dict[str, Any]:
    """A maintainer transfer as stores receive it (change entity ``staff_transfer``);
    the till of ``from_store`` shows the pending ones to its manager. ``members`` is how
    many; ``member_ids`` the first SENT_MEMBER_IDS of them (a change record must fit one
    message: a leaving guide's handover may name tens of thousands)."""
    ids = list(t.member_ids or [])
    return {
        "transfer_id": t.id,
        "members": len(ids),
        "member_ids": ids[:SENT_MEMBER_IDS],
        "from_staff": t.from_staff,
        "to_staff": t.to_staff,
        "from_store": t.from_store,
        "to_store": t.to_store,
        "reason": t.reason,
        "requested_by": t.requested_by,
        "requested_at": t.requested_at.isoformat() + "Z",
        "status": t.status,
        "store_approved_by": t.store_approved_by,
        "rejected_reason": t.rejected_reason,
    }


def snapshot_records(
    rec: Callable[[str, str, dict[str, Any]], dict[str, Any]],
) -> Iterator[dict[str, Any]]:
    """The registry and the open transfers, for a store's snapshot (hq/changes.py)."""
    for s in StaffMember.select().order_by(StaffMember.code):
        yield rec("staff", s.code, staff_state(s))
    for t in MaintainerTransfer.select().where(MaintainerTransfer.status.in_(OPEN_TRANSFERS)):
        yield rec("staff_transfer", t.id, transfer_state(t))


# ---- the registry -------------------------------------------------------------------


def check_staff_code(code: Any, field: str = "code") -> str:
    if not isinstance(code, str) or not STAFF_CODE_RE.match(code):
        raise ValidationError(
            f"员工编号须为1到64位字母、数字或 . _ - ({field}: 1-64 letters, digits, . _ -)",
            field=field,
        )
    return code


def _staff(code: str, field: str = "code") -> StaffMember:
    row = StaffMember.get_or_none(StaffMember.code == code)
    if row is None:
        raise NotFound(f"总部没有员工 {code} (no such staff member)", field=field)
    return row


def add_staff(
    db: pw.Database,
    code: str,
    name: str,
    store: str,
    role: str,
    by: str,
    now: dt.datetime,
) -> list[Change]:
    """Register a staff member at HQ (status active); sent to every store."""
    check_staff_code(code)
    by = audit.require_actor(by)
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise ValidationError("姓名须为1到64个字符 (name: 1-64 characters)", field="name")
    if not isinstance(store, str) or not re.match(r"^[A-Za-z0-9_-]{1,32}$", store):
        raise ValidationError("门店编号无效 (store: 1-32 letters, digits, _ -)", field="store")
    if role not in STAFF_ROLES:
        raise ValidationError(f"岗位须为 {STAFF_ROLES} 之一 (role)", field="role")
    with db.atomic():
        if StaffMember.get_or_none(StaffMember.code == code) is not None:
            raise Conflict(f"员工编号 {code} 已存在 (staff code exists)", field="code")
        row = StaffMember.create(
            code=code,
            name=name,
            store=store,
            role=role,
            status="active",
            created_at=now,
            updated_at=now,
        )
        audit.record(db, by, "staff.add", code, store=store, at=now, name=name, role=role)
        changes = ChangeSet()
        changes.add("staff", code, staff_state(row))
        return flush_changes(db, changes, now)


def mark_leaving(db: pw.Database, code: str, by: str, now: dt.datetime) -> list[Change]:
    """A staff member is leaving: no new member may name them, their members are still
    theirs until handed over (``close_staff``)."""
    by = audit.require_actor(by)
    with db.atomic():
        row = _staff(code)
        if row.status != "active":
            raise Conflict(f"员工 {code} 的状态为 {row.status} (not active)", field="code")
        row.status, row.updated_at = "leaving", now
        row.save()
        audit.record(db, by, "staff.leaving", code, store=row.store, at=now)
        changes = ChangeSet()
        changes.add("staff", code, staff_state(row))
        return flush_changes(db, changes, now)


def maintained_members(code: str) -> list[str]:
    """The ids of the live members this staff member looks after."""
    return [
        m
        for (m,) in Member.select(Member.id)
        .where((Member.staff_code == code) & (Member.status != "merged"))
        .order_by(Member.id)
        .tuples()
    ]


def close_staff(
    db: pw.Database,
    code: str,
    by: str,
    now: dt.datetime,
    handover_to: str | None = None,
    reason: str = "",
) -> list[Change]:
    """Close a staff account. Refused while members remain theirs, unless ``handover_to``
    names who takes them: that records an approved transfer (its audit rows
    maintainer.request, maintainer.approve and maintainer.move) and moves them first."""
    by = audit.require_actor(by)
    with db.atomic():
        row = _staff(code)
        if row.status == "closed":
            raise Conflict(f"员工 {code} 已离职关闭 (already closed)", field="code")
        members = maintained_members(code)
        changes = ChangeSet()
        if handover_to is not None:
            _receiver(handover_to)  # named: known and active, members or not
        if members and not handover_to:
            raise Conflict(
                f"员工 {code} 仍维护 {len(members)} 位会员, 须先移交 "
                f"(still maintains {len(members)} members: close with --handover-to)",
                field="handover_to",
                members=len(members),
            )
        if members and handover_to:
            text = (reason or "").strip() or f"员工 {code} 离职移交 (handover on leaving)"
            t = _new_transfer(db, members, row, handover_to, text, by, now, changes)
            t.store_approved_by, t.store_approved_at = by, now
            t.hq_approved_by, t.hq_approved_at = by, now
            audit.record(
                db, by, "maintainer.approve", t.id, text, store=t.from_store, at=now, level="hq"
            )
            _complete(db, t, by, now, changes)
        row.status, row.updated_at, row.closed_at = "closed", now, now
        row.save()
        audit.record(
            db, by, "staff.close", code, reason, store=row.store, at=now, handover_to=handover_to
        )
        changes.add("staff", code, staff_state(row))
        return flush_changes(db, changes, now)


def list_staff(store: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    query = StaffMember.select().order_by(StaffMember.store, StaffMember.code)
    if store:
        query = query.where(StaffMember.store == store)
    if status:
        if status not in STAFF_STATUSES:
            raise ValidationError(f"status 须为 {STAFF_STATUSES} 之一", field="status")
        query = query.where(StaffMember.status == status)
    counts = dict(
        Member.select(Member.staff_code, pw.fn.COUNT(Member.id))
        .where(Member.status != "merged")
        .group_by(Member.staff_code)
        .tuples()
    )
    return [staff_state(s) | {"members": counts.get(s.code, 0)} for s in query]


def staff_names(codes: Iterable[str]) -> dict[str, str]:
    """Staff code -> name for the given codes (the known ones): one query, none for no
    codes. The follow-up and campaign call lists name each maintainer with it."""
    wanted = sorted({c for c in codes if c})
    if not wanted:
        return {}
    query = StaffMember.select(StaffMember.code, StaffMember.name)
    return {code: name for code, name in query.where(one_of(StaffMember.code, wanted)).tuples()}


# ---- transfers ----------------------------------------------------------------------


def _receiver(code: str) -> StaffMember:
    """The staff member members move to: known and active."""
    row = _staff(check_staff_code(code, "to"), "to")
    if row.status != "active":
        raise Conflict(
            f"员工 {code} 的状态为 {row.status}, 不能接收会员 (only an active staff member "
            "can take members)",
            field="to",
        )
    return row


def _open_members() -> set[str]:
    """Members already named by an open transfer."""
    out: set[str] = set()
    for (ids,) in (
        MaintainerTransfer.select(MaintainerTransfer.member_ids)
        .where(MaintainerTransfer.status.in_(OPEN_TRANSFERS))
        .tuples()
    ):
        if isinstance(ids, str):
            ids = MaintainerTransfer.member_ids.python_value(ids)
        out.update(ids or [])
    return out


def _new_transfer(
    db: pw.Database,
    member_ids: list[str],
    giver: StaffMember,
    to: str,
    reason: str,
    by: str,
    now: dt.datetime,
    changes: ChangeSet,
    transfer_id: str | None = None,
) -> MaintainerTransfer:
    receiver = _receiver(to)
    if receiver.code == giver.code:
        raise ValidationError("转出与转入员工相同 (from and to are the same)", field="to")
    busy = _open_members() & set(member_ids)
    if busy:
        raise Conflict(
            f"{len(busy)} 位会员已在另一待审批的转移申请中 (already in an open transfer)",
            field="members",
            members=sorted(busy)[:5],
        )
    t = MaintainerTransfer.create(
        id=transfer_id or str(uuid.uuid4()),
        member_ids=member_ids,
        from_staff=giver.code,
        to_staff=receiver.code,
        from_store=giver.store,
        to_store=receiver.store,
        reason=reason,
        requested_by=by,
        requested_at=now,
        status="pending",
    )
    audit.record(
        db,
        by,
        "maintainer.request",
        t.id,
        reason,
        store=giver.store,
        at=now,
        members=len(member_ids),
        from_staff=giver.code,
        to_staff=receiver.code,
        to_store=receiver.store,
    )
    changes.add("staff_transfer", t.id, transfer_state(t))
    return t


def request_transfer(
    db: pw.Database,
    from_staff: str,
    to_staff: str,
    reason: str | None,
    requested_by: str,
    now: dt.datetime,
    member_ids: Iterable[str] | None = None,
) -> MaintainerTransfer:
    """Ask to move members (all of ``from_staff``'s when ``member_ids`` is None) to
    ``to_staff``; it waits for the manager of ``from_staff``'s store."""
    text = audit.require_reason(reason, "维护人转移")
    by = audit.require_actor(requested_by)
    with db.atomic():
        changes = ChangeSet()
        t = _request(db, from_staff, to_staff, text, by, now, member_ids, changes)
        flush_changes(db, changes, now)
        return t


def _request(
    db: pw.Database,
    from_staff: str,
    to_staff: str,
    reason: str,
    by: str,
    now: dt.datetime,
    member_ids: Iterable[str] | None,
    changes: ChangeSet,
    transfer_id: str | None = None,
    store: str | None = None,
) -> MaintainerTransfer:
    """A new pending transfer; ``store`` (a till's request) must be ``from_staff``'s."""
    giver = _staff(check_staff_code(from_staff, "from"), "from")
    if store is not None and giver.store != store:
        raise Forbidden(
            f"员工 {giver.code} 属于门店 {giver.store} (another store's staff)", field="from"
        )
    if member_ids is None:
        ids = maintained_members(giver.code)
    else:
        ids = sorted(set(member_ids))
        found = dict(
            Member.select(Member.id, Member.staff_code)
            .where(one_of(Member.id, ids) & (Member.status != "merged"))
            .tuples()
        )
        for mid in ids:
            if mid not in found:
                raise NotFound(f"会员不存在: {mid}", field="members")
            if found[mid] != giver.code:
                raise ValidationError(
                    f"会员 {mid} 的维护人不是 {giver.code} (maintainer is {found[mid]})",
                    field="members",
                )
    if not ids:
        raise ValidationError(
            f"员工 {giver.code} 没有要转移的会员 (no members to move)", field="members"
        )
    if len(ids) > MAX_TRANSFER_MEMBERS:
        raise ValidationError(
            f"一次最多转移 {MAX_TRANSFER_MEMBERS} 位会员 (too many members)", field="members"
        )
    if transfer_id is not None and MaintainerTransfer.get_or_none(
        MaintainerTransfer.id == transfer_id
    ):
        raise Conflict(f"转移申请 {transfer_id} 已存在", field="transfer_id")
    return _new_transfer(db, ids, giver, to_staff, reason, by, now, changes, transfer_id)


def _transfer(transfer_id: str) -> MaintainerTransfer:
    query = MaintainerTransfer.select().where(MaintainerTransfer.id == transfer_id)
    if is_postgres(MaintainerTransfer._meta.database):
        query = query.for_update()
    t = query.get_or_none()
    if t is None:
        raise NotFound(f"没有转移申请 {transfer_id} (no such transfer)", field="transfer_id")
    return t


def _complete(
    db: pw.Database, t: MaintainerTransfer, by: str, now: dt.datetime, changes: ChangeSet
) -> None:
    """Move the members that still have ``from_staff`` as maintainer (one moved meanwhile
    by another way stays where it is) and mark the transfer done."""
    _receiver(t.to_staff)
    ids = list(t.member_ids or [])
    still = [
        m
        for (m,) in Member.select(Member.id)
        .where(
            one_of(Member.id, ids)
            & (Member.staff_code == t.from_staff)
            & (Member.status != "merged")
        )
        .tuples()
    ]
    for i in range(0, len(still), 500):
        Member.update(staff_code=t.to_staff, updated_at=now).where(
            one_of(Member.id, still[i : i + 500])
        ).execute()
    for mid in still:
        changes.member(mid)
    t.status, t.done_at, t.moved = "done", now, len(still)
    t.save()
    audit.record(
        db,
        by,
        "maintainer.move",
        t.id,
        t.reason,
        store=t.from_store,
        at=now,
        members=len(still),
        skipped=len(ids) - len(still),
        from_staff=t.from_staff,
        to_staff=t.to_staff,
    )
    changes.add("staff_transfer", t.id, transfer_state(t))


def _approve_at_store(
    db: pw.Database,
    t: MaintainerTransfer,
    by: str,
    now: dt.datetime,
    changes: ChangeSet,
    reason: str = "",
) -> None:
    if t.status != "pending":
        raise Conflict(
            f"转移申请 {t.id} 的状态为 {t.status}, 不是待店长审批 (not pending)",
            field="transfer_id",
        )
    t.store_approved_by, t.store_approved_at = by, now
    t.status = "store_approved"
    t.save()
    audit.record(
        db, by, "maintainer.approve", t.id, reason, store=t.from_store, at=now, level="store"
    )
    if t.from_store == t.to_store:
        _complete(db, t, by, now, changes)  # within one store the manager's approval is enough
    else:
        changes.add("staff_transfer", t.id, transfer_state(t))


def _reject(
    db: pw.Database,
    t: MaintainerTransfer,
    by: str,
    reason: str,
    now: dt.datetime,
    changes: ChangeSet,
    level: str,
) -> None:
    if t.status not in OPEN_TRANSFERS or (level == "store" and t.status != "pending"):
        raise Conflict(
            f"转移申请 {t.id} 的状态为 {t.status}, 不能驳回 (cannot reject)", field="transfer_id"
        )
    t.status, t.rejected_by, t.rejected_reason = "rejected", by, reason
    t.done_at = now
    t.save()
    audit.record(db, by, "maintainer.reject", t.id, reason, store=t.from_store, at=now, level=level)
    changes.add("staff_transfer", t.id, transfer_state(t))


def approve_transfer(
    db: pw.Database, transfer_id: str, by: str, now: dt.datetime, *, for_store: bool = False
) -> MaintainerTransfer:
    """HQ's approval of a transfer the store manager approved (across stores). With
    ``for_store`` an HQ user gives the store manager's approval too (a store without a
    manager at the till); that is audited as the store's step, by the HQ user."""
    by = audit.require_actor(by)
    with db.atomic():
        t = _transfer(transfer_id)
        changes = ChangeSet()
        if t.status not in OPEN_TRANSFERS:
            raise Conflict(
                f"转移申请 {t.id} 的状态为 {t.status} (already decided)", field="transfer_id"
            )
        if t.status == "pending":
            if not for_store:
                raise Conflict(
                    f"转移申请 {t.id} 等待门店 {t.from_store} 店长审批 (waiting for the store "
                    "manager; --for-store gives that approval from HQ)",
                    field="transfer_id",
                )
            _approve_at_store(db, t, by, now, changes)
        if t.status == "store_approved":
            t.hq_approved_by, t.hq_approved_at = by, now
            audit.record(db, by, "maintainer.approve", t.id, store=t.from_store, at=now, level="hq")
            _complete(db, t, by, now, changes)
        flush_changes(db, changes, now)
        return t


def reject_transfer(
    db: pw.Database, transfer_id: str, by: str, reason: str | None, now: dt.datetime
) -> MaintainerTransfer:
    text = audit.require_reason(reason, "驳回转移申请")
    by = audit.require_actor(by)
    with db.atomic():
        t = _transfer(transfer_id)
        changes = ChangeSet()
        _reject(db, t, by, text, now, changes, "hq")
        flush_changes(db, changes, now)
        return t


def list_transfers(status: str | None = None, store: str | None = None) -> list[dict[str, Any]]:
    query = MaintainerTransfer.select().order_by(MaintainerTransfer.requested_at)
    if status:
        query = query.where(MaintainerTransfer.status == status)
    if store:
        query = query.where(
            (MaintainerTransfer.from_store == store) | (MaintainerTransfer.to_store == store)
        )
    return [transfer_state(t) | {"moved": t.moved} for t in query]


# ---- from the tills (called by hq/apply.py) -----------------------------------------


def apply_staff_decision(ctx: Any, body: dict[str, Any]) -> None:
    """A store manager's approval or rejection at the till (up item ``staff_decision``).
    Only the store the transfer is from may decide it, once; a decision on a transfer
    no longer pending is refused (the till learns the outcome from the change it gets)."""
    t = _transfer(body["transfer_id"])
    if t.from_store != ctx.item.store:
        raise Forbidden(
            f"转移申请 {t.id} 属于门店 {t.from_store} (another store's transfer)",
            field="transfer_id",
        )
    actor = audit.till_actor(ctx.item.store, body.get("approved_by"))
    reason = str(body.get("reason") or "")
    # the members move in the database: what the batch holds of them is written and dropped
    ctx.book.forget()
    if body["decision"] == "approve":
        _approve_at_store(ctx.db, t, actor, ctx.now, ctx.changes, reason)
    else:
        _reject(ctx.db, t, actor, reason or "门店驳回", ctx.now, ctx.changes, "store")


def apply_staff_request(ctx: Any, body: dict[str, Any]) -> None:
    """A transfer asked for at the till (up item ``staff_request``): checked as HQ's own
    requests are, for the requesting store's staff only; its id is the till's, so a
    resent item is refused as a duplicate. A refused request is dead-lettered and the
    store sees the refusal; an accepted one comes back down as ``staff_transfer``."""
    actor = audit.till_actor(ctx.item.store, body.get("requested_by"))
    _request(
        ctx.db,
        body["from_staff"],
        body["to_staff"],
        audit.require_reason(body.get("reason"), "维护人转移"),
        actor,
        ctx.now,
        body.get("member_ids"),
        ctx.changes,
        transfer_id=body["transfer_id"],
        store=ctx.item.store,
    )


def note_registration(ctx: Any, body: dict[str, Any]) -> None:
    """After a registration is applied: remember who recruited the member, and check the
    maintainer against the registry. An unknown or closed code keeps the registration
    (the store is never blocked) and opens an HqException ``unknown_maintainer``. With
    an empty registry (a chain not using it yet) nothing is checked."""
    code = body.get("staff_code")
    if not code:
        return
    from hq.members import parse_instant

    ctx.book.insert(
        Recruitment,
        member_id=body["member_id"],
        staff_code=code,
        store=ctx.item.store,
        registered_utc=parse_instant(body["registered_at"]),
    )
    row = StaffMember.get_or_none(StaffMember.code == code)
    if row is not None and row.status != "closed":
        return
    if row is None and not StaffMember.select().exists():
        return
    HqException.create(
        kind="unknown_maintainer",
        member_id=body["member_id"],
        store=ctx.item.store,
        seq=ctx.item.seq,
        ref=ctx.item.id,
        details={"staff_code": code, "staff_status": row.status if row else None},
        created_at=ctx.now,
    )


def prefetch_goods(goods: dict[str, dict[str, Any]], items: list[Any]) -> None:
    """Load the category and cost of every SKU a batch's sales name, in one query
    (``BatchCache.prefetch``); a SKU HQ does not know gets ``{}``."""
    skus: set[str] = set()
    for item in items:
        body = item.get("body") if isinstance(item, dict) else None
        if not isinstance(body, dict) or item.get("kind") != "sale":
            continue
        for line in body.get("lines") or []:
            if isinstance(line, dict) and isinstance(line.get("sku"), str):
                skus.add(line["sku"])
    _load_goods(goods, skus - goods.keys())


def _load_goods(goods: dict[str, dict[str, Any]], skus: set[str]) -> None:
    if not skus:
        return
    goods.update(dict.fromkeys(skus, {}))
    for sku, data in (
        Product.select(Product.sku, Product.data).where(one_of(Product.sku, sorted(skus))).tuples()
    ):
        data = Product.data.python_value(data) if isinstance(data, str) else data
        goods[sku] = {"category": (data or {}).get("category"), "cost": (data or {}).get("cost")}


def sale_credit(
    body: dict[str, Any], member: Member | None, goods: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The Sale columns that credit a sale (hq.models.Sale): the cashier, the serving
    staff (``served_by``, the cashier when the till named none) and the member's maintainer
    as HQ holds it when it applies the sale; each line's category and cost from HQ's
    catalogue then (``line_goods``; ``goods`` is the batch's cache, filled here for a SKU
    the batch did not prefetch)."""
    lines = [ln for ln in body.get("lines") or [] if isinstance(ln, dict)]
    _load_goods(goods, {str(ln.get("sku")) for ln in lines} - goods.keys())
    line_goods = []
    for ln in lines:
        g = goods.get(str(ln.get("sku"))) or {}
        line_goods.append(
            {
                "line_no": ln.get("line_no"),
                "sku": ln.get("sku"),
                "category": g.get("category") or "",
                "cost": g.get("cost"),
            }
        )
    cashier = body.get("cashier")
    return {
        "cashier": cashier,
        "served_by": body.get("served_by") or cashier,
        "maintainer": member.staff_code if member is not None else None,
        "line_goods": line_goods,
    }


# ---- figures ------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Business days ``first``..``last`` inclusive (None: unbounded), compared with the
    date the till wrote (the first ten characters of ``occurred_at``)."""

    first: dt.date | None = None
    last: dt.date | None = None

    def sales(self) -> pw.Expression:
        day = pw.fn.SUBSTR(Sale.occurred_at, 1, 10)
        cond: pw.Expression = Sale.sale_id.is_null(False)
        if self.first:
            cond &= day >= self.first.isoformat()
        if self.last:
            cond &= day <= self.last.isoformat()
        return cond

    def registrations(self) -> pw.Expression:
        cond: pw.Expression = Recruitment.member_id.is_null(False)
        if self.first:
            cond &= Recruitment.registered_utc >= dt.datetime.combine(self.first, dt.time())
        if self.last:
            end = dt.datetime.combine(self.last + dt.timedelta(days=1), dt.time())
            cond &= Recruitment.registered_utc < end
        return cond


def staff_sales(store: str | None = None, period: Period | None = None) -> list[dict[str, Any]]:
    """Per staff code: members recruited in the period (``recruited``), the sales in the
    period of the members they ever recruited (``recruited_sales``, ``recruited_total``),
    the sales they served (``served_sales``, ``served_total``) and the sales of the members
    they maintained at the time of each sale (``maintained_sales``, ``maintained_total``).
    Totals are fen, gross of returns; ``*_refunded`` is what returns of those same sales
    refunded so far (net = total - refunded). ``followups_done``: the follow-up calls
    whose outcome they recorded at a till in the period (hq/followups/tasks.py). ``store``
    limits sales and registrations to that store (and the registry rows listed to its
    staff)."""
    period = period or Period()
    where = period.sales()
    if store:
        where &= Sale.store == store
    rows: dict[str, dict[str, Any]] = {}

    def row(code: str) -> dict[str, Any]:
        return rows.setdefault(
            code,
            {
                "code": code,
                "name": "",
                "store": "",
                "status": "",
                "recruited": 0,
                "recruited_sales": 0,
                "recruited_total": 0,
                "served_sales": 0,
                "served_total": 0,
                "maintained_sales": 0,
                "maintained_total": 0,
                "recruited_refunded": 0,
                "served_refunded": 0,
                "maintained_refunded": 0,
                "followups_done": 0,  # -- follow-ups (issue 14)
            },
        )

    staff_query = StaffMember.select()
    if store:
        staff_query = staff_query.where(StaffMember.store == store)
    for s in staff_query:
        row(s.code).update(name=s.name, store=s.store, status=s.status)
    reg_where = period.registrations() & (Member.status != "merged")
    if store:
        reg_where &= Recruitment.store == store
    for code, n in (
        Recruitment.select(Recruitment.staff_code, pw.fn.COUNT(Recruitment.member_id))
        .join(Member, on=(Member.id == Recruitment.member_id))
        .where(reg_where)
        .group_by(Recruitment.staff_code)
        .tuples()
    ):
        row(code)["recruited"] = n
    for code, n, total in (
        Sale.select(Recruitment.staff_code, pw.fn.COUNT(Sale.sale_id), pw.fn.SUM(Sale.total))
        .join(Recruitment, on=(Recruitment.member_id == Sale.member_id))
        .where(where)
        .group_by(Recruitment.staff_code)
        .tuples()
    ):
        row(code).update(recruited_sales=n, recruited_total=int(total or 0))
    for code, refunded in (
        Return.select(Recruitment.staff_code, pw.fn.SUM(Return.refund_total))
        .join(Sale, on=(Sale.sale_id == Return.sale_id))
        .join(Recruitment, on=(Recruitment.member_id == Sale.member_id))
        .where(where)
        .group_by(Recruitment.staff_code)
        .tuples()
    ):
        row(code)["recruited_refunded"] = int(refunded or 0)
    for column, prefix in ((Sale.served_by, "served"), (Sale.maintainer, "maintained")):
        for code, n, total in (
            Sale.select(column, pw.fn.COUNT(Sale.sale_id), pw.fn.SUM(Sale.total))
            .where(where & column.is_null(False))
            .group_by(column)
            .tuples()
        ):
            row(code).update({f"{prefix}_sales": n, f"{prefix}_total": int(total or 0)})
        for code, refunded in (
            Return.select(column, pw.fn.SUM(Return.refund_total))
            .join(Sale, on=(Sale.sale_id == Return.sale_id))
            .where(where & column.is_null(False))
            .group_by(column)
            .tuples()
        ):
            row(code)[f"{prefix}_refunded"] = int(refunded or 0)
    # -- follow-ups (issue 14): the calls each recorded at a till in the period
    from hq.followups.tasks import done_by_staff

    for code, n in done_by_staff(store, period.first, period.last).items():
        row(code)["followups_done"] = n
    for code in list(rows):
        if not StaffMember.get_or_none(StaffMember.code == code) and not rows[code]["status"]:
            rows[code]["status"] = "unknown"
    return [rows[c] for c in sorted(rows)]


def category_margin(store: str | None = None, period: Period | None = None) -> list[dict[str, Any]]:
    """Per category, over the period's sales: ``amount`` (fen, the costed lines' amounts
    after every discount), ``cost`` (the lines' unit cost times qty, from
    ``Sale.line_goods``), both net of what returns of those same sales took back so far
    (a returned line's amount, and its unit cost times the qty returned), margin = amount
    - cost; ``uncosted``, the amount (net of returns) whose cost is unknown, which the
    margin leaves out; ``returned``, what the returns took back in all (as staff_sales'
    ``*_refunded``: the sales of the period, their returns whenever they came)."""
    where = (period or Period()).sales() & Sale.line_goods.is_null(False)
    if store:
        where &= Sale.store == store
    out: dict[str, dict[str, int]] = {}

    def add(goods: Any, lines: Any, sign: int) -> None:
        goods = Sale.line_goods.python_value(goods) if isinstance(goods, str) else goods
        by_line = {g.get("line_no"): g for g in goods or []}
        for ln in lines or []:
            g = by_line.get(ln.get("line_no")) or {}
            cat = out.setdefault(
                g.get("category") or "",
                {"amount": 0, "cost": 0, "margin": 0, "uncosted": 0, "returned": 0},
            )
            amount = int(ln.get("amount") or 0)
            cost = g.get("cost")
            if sign < 0:
                cat["returned"] += amount
            if isinstance(cost, int) and not isinstance(cost, bool):
                cat["amount"] += sign * amount
                cat["cost"] += sign * cost * int(ln.get("qty") or 0)
            else:
                cat["uncosted"] += sign * amount

    def lines_of(body: Any) -> Any:  # a sale's or a return's body (both JSON text)
        body = Sale.body.python_value(body) if isinstance(body, str) else body
        return (body or {}).get("lines")

    for body, goods in Sale.select(Sale.body, Sale.line_goods).where(where).tuples():
        add(goods, lines_of(body), 1)
    returns = (
        Return.select(Return.body, Sale.line_goods)
        .join(Sale, on=(Sale.sale_id == Return.sale_id))
        .where(where)
        .tuples()
    )
    for body, goods in returns:
        add(goods, lines_of(body), -1)
    for cat in out.values():
        cat["margin"] = cat["amount"] - cat["cost"]
    return [{"category": k, **v} for k, v in sorted(out.items())]
