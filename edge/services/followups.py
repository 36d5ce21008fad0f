"""Follow-up calls (回访) at the till (docs/followups.md): the store's open tasks as HQ sent
them (change entity ``followup``), listed for the signed-in staff, and each call's outcome
recorded here and sent up as a ``followup_outcome`` item in the same transaction."""

from __future__ import annotations

from typing import Any

from core.errors import Conflict, NotFound
from core.followups import check_outcome
from core.receipt import mask_name
from edge.models import FollowUp, FollowUpOutcome, Member, Staff, StaffRegistry
from edge.services.context import Till
from edge.services.members import resolve
from edge.services.outbox import enqueue

# ---- down: HQ's tasks ---------------------------------------------------------------


def apply_followup(store: str, key: str, op: str, data: dict[str, Any], now: str) -> None:
    """Keep this store's open tasks; a task closed at HQ, moved to another store or deleted
    is dropped. A task whose outcome was recorded here stays done until HQ closes it."""
    if op != "upsert" or data.get("store") != store or data.get("status") != "open":
        FollowUp.delete().where(FollowUp.id == key).execute()
        return
    done_here = FollowUpOutcome.select().where(FollowUpOutcome.followup_id == key).exists()
    FollowUp.insert(
        id=key,
        member_id=str(data.get("member_id") or ""),
        kind=str(data.get("kind") or ""),
        staff_code=data.get("staff_code") or None,
        reason=str(data.get("reason") or ""),
        due_on=str(data.get("due_on") or ""),
        status="done" if done_here else "open",
        data=data,
        updated_at=now,
    ).on_conflict_replace().execute()


# ---- the lists ----------------------------------------------------------------------


def _names(codes: set[str]) -> dict[str, str]:
    codes.discard("")
    if not codes:
        return {}
    names = {s.code: s.name for s in StaffRegistry.select().where(StaffRegistry.code.in_(codes))}
    names |= {s.code: s.name for s in Staff.select().where(Staff.code.in_(codes))}
    return names


def _views(till: Till, rows: list[FollowUp]) -> list[dict[str, Any]]:
    today = till.now().date().isoformat()
    members = {
        m.id: m
        for m in Member.select(Member.id, Member.name, Member.phone_tail).where(
            Member.id.in_({r.member_id for r in rows})
        )
    }
    names = _names({r.staff_code or "" for r in rows})
    out = []
    for r in rows:
        m = members.get(r.member_id)
        out.append(
            {
                "followup_id": r.id,
                "member_id": r.member_id,
                "masked_name": mask_name(m.name) if m else "",
                # the till holds other members' phones as a hash and the last four digits
                # only (invariant 8): the screen shows what it can
                "phone": f"*******{m.phone_tail}" if m and m.phone_tail else "",
                "kind": r.kind,
                "kind_label": str((r.data or {}).get("kind_label") or r.kind),
                "reason": r.reason,
                "due_on": r.due_on,
                "overdue": r.due_on < today,
                "staff_code": r.staff_code,
                "staff_name": names.get(r.staff_code or "", ""),
            }
        )
    return out


def due_calls(till: Till, staff_code: str, whole_store: bool = False) -> list[dict[str, Any]]:
    """Open tasks due today or overdue: the staff member's own, or (a manager) the store's,
    the oldest due first."""
    today = till.now().date().isoformat()
    query = FollowUp.select().where((FollowUp.status == "open") & (FollowUp.due_on <= today))
    if not whole_store:
        query = query.where(FollowUp.staff_code == staff_code)
    return _views(till, list(query.order_by(FollowUp.due_on, FollowUp.id)))


def member_calls(till: Till, member_id: str) -> list[dict[str, Any]]:
    """A member's open tasks at this store, whenever due."""
    member = resolve(member_id)
    query = FollowUp.select().where((FollowUp.status == "open") & (FollowUp.member_id == member.id))
    return _views(till, list(query.order_by(FollowUp.due_on, FollowUp.id)))


# ---- the outcome --------------------------------------------------------------------


def _outcome_view(row: FollowUpOutcome) -> dict[str, Any]:
    return {
        "outcome_id": row.outcome_id,
        "followup_id": row.followup_id,
        "member_id": row.member_id,
        "staff_code": row.staff_code,
        "reached": row.reached,
        "satisfaction": row.satisfaction,
        "said": row.said,
        "complaint": row.complaint,
        "request": row.request,
        "recorded_at": row.recorded_at,
    }


def record_outcome(
    till: Till, followup_id: str, data: dict[str, Any], staff_code: str
) -> tuple[dict[str, Any], bool]:
    """Record a call's outcome and send it up, in one transaction. The same ``outcome_id``
    again answers the outcome recorded (``created`` False) and sends nothing; another
    outcome for a task already done here is a conflict."""
    fields = check_outcome(data)
    now = till.now().isoformat(timespec="seconds")
    with till.db.atomic():
        same = FollowUpOutcome.get_or_none(FollowUpOutcome.outcome_id == fields["outcome_id"])
        if same is not None:
            if same.followup_id != followup_id:
                raise Conflict(
                    "该回访记录编号已用于另一条回访 (outcome_id used for another follow-up)",
                    field="outcome_id",
                )
            return _outcome_view(same), False
        task = FollowUp.get_or_none(FollowUp.id == followup_id)
        if task is None:
            raise NotFound(
                f"本店没有这条回访任务 {followup_id} (no such follow-up here)",
                field="followup_id",
            )
        if task.status != "open":
            raise Conflict(
                "这条回访已记录结果 (this follow-up already has an outcome)", field="followup_id"
            )
        row = FollowUpOutcome.create(
            followup_id=task.id,
            member_id=task.member_id,
            staff_code=staff_code,
            recorded_at=now,
            **fields,
        )
        task.status = "done"
        task.save()
        enqueue(
            till,
            "followup_outcome",
            {**_outcome_view(row), "recorded_at": now},
            now,
            till.rules().version,
        )
    return _outcome_view(row), True
