"""Maintainers (维护人/专属导购) and serving staff (导购) at the till, offline.

(Sign-in PINs stay in edge/services/staff.py; this module is the programme's part.)

Which staff codes the till accepts (docs/programme/staff.md, "At the till"):

- once HQ's staff registry has arrived (at least one ``staff`` record received, table
  ``StaffRegistry``), a code must be in it: ``active`` may be named as a member's
  maintainer and as the serving staff; ``leaving`` only as the serving staff (they still
  work, but take no new members); ``closed`` as neither;
- before it has arrived (a store not yet synced, or a chain not using the registry), the
  code must be an active staff member of this till's own ``Staff`` table.

No code (None or empty) is always fine: the member has no maintainer, the sale was
served by the cashier. A refused code is a 400 naming the field, Chinese first.

A manager approves or rejects the open maintainer transfers of this store here; the
decision goes up as the item ``staff_decision`` and HQ applies it (the members'
new maintainer comes back down as member changes).
"""

from __future__ import annotations

from typing import Any

from core.errors import Conflict, NotFound, ValidationError
from core.ids import is_uuid, uuid7
from core.protocol import MAX_BODY_MEMBER_IDS
from edge.models import MaintainerRequest, Member, Staff, StaffRegistry
from edge.services.context import Till
from edge.services.outbox import enqueue

MAX_REASON = 500
DECISIONS = ("approve", "reject")


def registry_arrived() -> bool:
    return StaffRegistry.select().exists()


def check_staff(code: Any, field: str = "staff_code", *, serving: bool = False) -> str | None:
    """The code if the till accepts it as a maintainer (or, ``serving``, as who served the
    sale), None for no code; ValidationError naming ``field`` otherwise."""
    if code is None or code == "":
        return None
    what = "导购" if serving else "维护人"
    if not isinstance(code, str) or len(code) > 64:
        raise ValidationError(f"{what}编号须为文字 ({field} must be a staff code)", field=field)
    if registry_arrived():
        row = StaffRegistry.get_or_none(StaffRegistry.code == code)
        if row is None:
            raise ValidationError(
                f"{what} {code} 不是总部登记的员工 ({field}: unknown staff code)", field=field
            )
        if row.status == "closed" or (row.status == "leaving" and not serving):
            word = "已离职" if row.status == "closed" else "正在离职交接, 不能再分配会员"
            raise ValidationError(
                f"{what} {code} ({row.name}) {word} ({field}: staff {row.status})", field=field
            )
        return code
    local = Staff.get_or_none(Staff.code == code)
    if local is None or not local.active:
        raise ValidationError(
            f"{what} {code} 不是本店员工 ({field}: unknown staff code)", field=field
        )
    return code


def maintainers(till: Till) -> list[dict[str, Any]]:
    """Who may be named as a maintainer here: this store's active staff in HQ's registry
    (or, before it arrives, the till's own active staff)."""
    if registry_arrived():
        rows = (
            StaffRegistry.select()
            .where((StaffRegistry.store == till.store) & (StaffRegistry.status == "active"))
            .order_by(StaffRegistry.code)
        )
        return [{"code": r.code, "name": r.name, "role": r.role, "source": "hq"} for r in rows]
    rows = Staff.select().where(Staff.active == True).order_by(Staff.code)  # noqa: E712
    return [{"code": r.code, "name": r.name, "role": r.role, "source": "till"} for r in rows]


# ---- what HQ sends (edge/sync/apply.py calls these) ---------------------------------


def apply_staff(code: str, op: str, data: dict[str, Any], now: str) -> None:
    if op == "delete":
        StaffRegistry.update(status="closed", updated_at=now).where(
            StaffRegistry.code == code
        ).execute()
        return
    StaffRegistry.insert(
        code=code,
        name=str(data.get("name") or ""),
        store=str(data.get("store") or ""),
        role=str(data.get("role") or ""),
        status=str(data.get("status") or "active"),
        updated_at=now,
    ).on_conflict_replace().execute()


def apply_transfer(store: str, key: str, op: str, data: dict[str, Any], now: str) -> None:
    """Keep this store's open transfers; a decided one (done, rejected) is dropped."""
    status = data.get("status")
    if (
        op == "delete"
        or data.get("from_store") != store
        or status
        not in (
            "pending",
            "store_approved",
        )
    ):
        MaintainerRequest.delete().where(MaintainerRequest.id == key).execute()
        return
    existing = MaintainerRequest.get_or_none(MaintainerRequest.id == key)
    keep = existing is not None and existing.status == status
    MaintainerRequest.insert(
        id=key,
        status=status,
        data=data,
        decision=existing.decision if keep else None,
        decided_by=existing.decided_by if keep else None,
        decided_at=existing.decided_at if keep else None,
        updated_at=now,
    ).on_conflict_replace().execute()


# ---- asking for a transfer ----------------------------------------------------------


def request_transfer(till: Till, data: dict[str, Any], requested_by: str) -> dict[str, Any]:
    """Ask HQ to move members from one maintainer to another: ``from_staff``, ``to_staff``
    (a maintainer the till accepts), ``member_ids`` (members here whose maintainer is
    ``from_staff``; absent: all of theirs, as HQ knows them) and a ``reason``. It goes up
    as one ``staff_request`` item; HQ checks it again and, once accepted, sends it down as
    a transfer this store's manager then approves (GET/POST .../transfers)."""
    from_staff = data.get("from_staff")
    if not isinstance(from_staff, str) or not from_staff:
        raise ValidationError("请填写转出员工 (from_staff is required)", field="from_staff")
    to_staff = data.get("to_staff")
    if not isinstance(to_staff, str) or not to_staff:
        raise ValidationError("请填写接收员工 (to_staff is required)", field="to_staff")
    check_staff(to_staff, "to_staff")
    if to_staff == from_staff:
        raise ValidationError("转出与接收员工相同 (from and to are the same)", field="to_staff")
    reason = data.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError("请填写转移原因 (reason is required)", field="reason")
    if len(reason.strip()) > MAX_REASON:
        raise ValidationError(f"原因过长 (reason: at most {MAX_REASON} characters)", field="reason")
    ids = data.get("member_ids")
    if ids is not None:
        if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_BODY_MEMBER_IDS:
            raise ValidationError(
                f"member_ids 须为1到{MAX_BODY_MEMBER_IDS}个会员编号 (member_ids: a list)",
                field="member_ids",
            )
        for i, mid in enumerate(ids):
            if not isinstance(mid, str) or not is_uuid(mid):
                raise ValidationError(f"第 {i + 1} 个会员编号无效", field=f"member_ids[{i}]")
        ids = sorted(set(ids))
        have = dict(Member.select(Member.id, Member.staff_code).where(Member.id.in_(ids)).tuples())
        for mid in ids:
            if mid not in have:
                raise NotFound(f"会员不存在: {mid}", field="member_ids")
            if have[mid] != from_staff:
                raise ValidationError(
                    f"会员 {mid} 的维护人不是 {from_staff} (maintainer is {have[mid]})",
                    field="member_ids",
                )
    now = till.now().isoformat(timespec="seconds")
    body = {
        "transfer_id": uuid7(),
        "from_staff": from_staff,
        "to_staff": to_staff,
        "member_ids": ids,
        "reason": reason.strip(),
        "requested_by": requested_by,
        "requested_at": now,
    }
    with till.db.atomic():
        item = enqueue(till, "staff_request", body, now, till.rules().version)
    return {**body, "status": "sent", "outbox_seq": item.seq}


# ---- the manager's view and decision ------------------------------------------------


def _view(row: MaintainerRequest) -> dict[str, Any]:
    d = row.data or {}
    names = {
        r.code: r.name
        for r in StaffRegistry.select().where(
            StaffRegistry.code.in_([d.get("from_staff"), d.get("to_staff")])
        )
    }
    return {
        "transfer_id": row.id,
        "status": row.status,
        "members": d.get("members", len(d.get("member_ids") or [])),
        "member_ids": list(d.get("member_ids") or []),
        "from_staff": d.get("from_staff"),
        "from_name": names.get(d.get("from_staff"), ""),
        "to_staff": d.get("to_staff"),
        "to_name": names.get(d.get("to_staff"), ""),
        "to_store": d.get("to_store"),
        "reason": d.get("reason") or "",
        "requested_by": d.get("requested_by") or "",
        "requested_at": d.get("requested_at") or "",
        "decision": row.decision,
        "decided_by": row.decided_by,
    }


def open_transfers(till: Till) -> list[dict[str, Any]]:
    """This store's open transfers, oldest first: pending ones wait for the manager,
    store_approved ones for HQ (across stores)."""
    rows = MaintainerRequest.select().order_by(MaintainerRequest.id)
    views = [_view(r) for r in rows]
    return sorted(views, key=lambda v: (v["requested_at"], v["transfer_id"]))


def decide(
    till: Till,
    transfer_id: str,
    decision: str,
    manager: str,
    cashier: str,
    reason: Any = None,
) -> dict[str, Any]:
    """The manager's approval or rejection of a pending transfer of this store: recorded
    here and sent up in one transaction. A rejection needs a reason."""
    if decision not in DECISIONS:
        raise ValidationError(f"decision must be one of {DECISIONS}", field="decision")
    if reason is not None and not isinstance(reason, str):
        raise ValidationError("原因须为文字 (reason must be a text)", field="reason")
    text = (reason or "").strip()
    if len(text) > MAX_REASON:
        raise ValidationError(f"原因过长 (reason: at most {MAX_REASON} characters)", field="reason")
    if decision == "reject" and not text:
        raise ValidationError("驳回须填写原因 (reason is required to reject)", field="reason")
    now = till.now().isoformat(timespec="seconds")
    with till.db.atomic():
        row = MaintainerRequest.get_or_none(MaintainerRequest.id == transfer_id)
        if row is None:
            raise NotFound(
                f"本店没有待审批的转移申请 {transfer_id} (no such open transfer)",
                field="transfer_id",
            )
        if row.status != "pending":
            raise Conflict(
                "该申请已由店长审批, 等待总部审批 (already approved here, waiting for HQ)",
                field="transfer_id",
            )
        if row.decision is not None:
            raise Conflict(
                f"该申请已{'批准' if row.decision == 'approve' else '驳回'}, 等待总部处理 "
                "(already decided here, waiting for HQ)",
                field="transfer_id",
            )
        row.decision, row.decided_by, row.decided_at = decision, manager, now
        row.save()
        enqueue(
            till,
            "staff_decision",
            {
                "transfer_id": transfer_id,
                "decision": decision,
                "decided_at": now,
                "approved_by": manager,
                "cashier": cashier,
                "reason": text,
            },
            now,
            till.rules().version,
        )
    return _view(row)
