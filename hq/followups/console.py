"""The console's page 回访 (follow-up calls): the tasks by store, staff, kind and status with
their due day and overdue ones marked, a task's page where an outcome is recorded, and
the chain's rules. The same list as JSON at ``/api/followups``. A store or area manager
sees only their stores' tasks; the rules are changed with ``rules.publish``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw
from flask import Blueprint, current_app, jsonify, redirect, request, url_for

from core.errors import NotFound, ValidationError
from core.followups import KINDS
from core.ids import uuid7
from hq.access.guard import current, requires
from hq.access.masking import mask_name
from hq.console import render
from hq.followups import tasks
from hq.models import FollowUp, FollowUpOutcome, Member, one_of, utcnow
from hq.programme.staff import staff_names
from hq.services import list_stores

bp = Blueprint("followups_console", __name__)

STATUSES = {"open": "待回访", "overdue": "已逾期", "done": "已完成", "all": "全部"}
PER_PAGE = 200
_TEXT_MAX = 64


def _db() -> Any:
    return current_app.extensions["hq_db"]


def _today() -> dt.date:
    return current_app.config["HQ"].business_day(utcnow())


def _arg(name: str) -> str:
    value = (request.args.get(name) or "").strip()
    if len(value) > _TEXT_MAX or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValidationError(f"参数 {name} 含有无效字符或过长 ({name} is not valid)", field=name)
    return value


def filters() -> dict[str, str]:
    """The query string's filters, checked: store, staff, kind, status (default open)."""
    f = {name: _arg(name) for name in ("store", "staff", "kind", "status")}
    f["status"] = f["status"] or "open"
    if f["status"] not in STATUSES:
        raise ValidationError(
            f"状态须为 {'/'.join(STATUSES)} 之一 (status: one of {', '.join(STATUSES)})",
            field="status",
        )
    if f["kind"] and f["kind"] not in KINDS:
        raise ValidationError(f"没有这种回访类型: {f['kind']} (unknown kind)", field="kind")
    if f["store"]:
        current().require_store(f["store"])
    return f


def list_tasks(f: dict[str, str], today: dt.date) -> list[dict[str, Any]]:
    """The tasks the principal may see under the filters: the earliest due first (done
    ones: the latest done first), at most PER_PAGE."""
    principal = current()
    query = FollowUp.select()
    if principal.stores is not None:
        query = query.where(one_of(FollowUp.store, sorted(principal.stores) or [""]))
    if f["store"]:
        query = query.where(FollowUp.store == f["store"])
    if f["staff"]:
        query = query.where(FollowUp.staff_code == f["staff"])
    if f["kind"]:
        query = query.where(FollowUp.kind == f["kind"])
    if f["status"] == "done":
        query = query.where(FollowUp.status == "done").order_by(FollowUp.done_at.desc())
    elif f["status"] == "all":
        query = query.order_by(FollowUp.due_on.desc(), FollowUp.id)
    else:
        query = query.where(FollowUp.status == "open")
        if f["status"] == "overdue":
            query = query.where(FollowUp.due_on < today)
        query = query.order_by(FollowUp.due_on, FollowUp.id)
    return _views(list(query.limit(PER_PAGE)), today)


def _views(rows: list[FollowUp], today: dt.date) -> list[dict[str, Any]]:
    principal = current()
    ids = sorted({r.member_id for r in rows})
    names = (
        {m.id: m.name for m in Member.select(Member.id, Member.name).where(one_of(Member.id, ids))}
        if ids
        else {}
    )
    staff = staff_names(r.staff_code for r in rows)
    show_name = principal.can("members.pii")
    out = []
    for r in rows:
        name = names.get(r.member_id, "")
        out.append(
            {
                "followup_id": r.id,
                "member_id": r.member_id,
                "member_name": name if show_name else mask_name(name),
                "kind": r.kind,
                "kind_label": KINDS.get(r.kind, r.kind),
                "store": r.store,
                "staff_code": r.staff_code,
                "staff_name": staff.get(r.staff_code or "", ""),
                "reason": r.reason,
                "due_on": r.due_on.isoformat(),
                "status": r.status,
                "overdue": r.status == "open" and r.due_on < today,
                "done_at": r.done_at.isoformat() + "Z" if r.done_at else None,
                "done_by": r.done_by,
            }
        )
    return out


def summary(today: dt.date) -> list[dict[str, Any]]:
    """Per store the principal sees: open tasks, overdue ones, done in the last 30 days."""
    principal = current()
    since = utcnow() - dt.timedelta(days=30)
    late = pw.Case(None, [((FollowUp.status == "open") & (FollowUp.due_on < today), 1)], 0)
    is_open = pw.Case(None, [(FollowUp.status == "open", 1)], 0)
    recent = pw.Case(None, [((FollowUp.status == "done") & (FollowUp.done_at >= since), 1)], 0)
    query = FollowUp.select(
        FollowUp.store, pw.fn.SUM(is_open), pw.fn.SUM(late), pw.fn.SUM(recent)
    ).group_by(FollowUp.store)
    if principal.stores is not None:
        query = query.where(one_of(FollowUp.store, sorted(principal.stores) or [""]))
    return [
        {"store": s, "open": int(o or 0), "overdue": int(d or 0), "done_30d": int(n or 0)}
        for s, o, d, n in query.order_by(FollowUp.store).tuples()
    ]


def _task(followup_id: str) -> FollowUp:
    if len(followup_id) > 36:
        raise NotFound("回访任务不存在 (no such follow-up)", field="followup_id")
    task = FollowUp.get_or_none(FollowUp.id == followup_id)
    if task is None:
        raise NotFound("回访任务不存在 (no such follow-up)", field="followup_id")
    current().require_store(task.store)
    return task


@bp.get("/followups")
@requires("followups.read")
def followups_page() -> Any:
    today = _today()
    stores = list_stores(current().stores)
    try:
        f = filters()
    except ValidationError as exc:
        empty = {"store": "", "staff": "", "kind": "", "status": "open"}
        return render(
            "followups.html", 400, f=empty, rows=[], problem=exc.message, **_page(today, stores)
        )
    return render("followups.html", f=f, rows=list_tasks(f, today), **_page(today, stores))


def _page(today: dt.date, stores: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "today": today.isoformat(),
        "stores": stores,
        "kinds": KINDS,
        "statuses": STATUSES,
        "summary": summary(today),
        "rules": tasks.rules(),
        "param_labels": tasks.PARAM_LABELS,
        "notice": "规则已保存 (saved)" if request.args.get("saved") else None,
    }


@bp.get("/api/followups")
@requires("followups.read")
def followups_api() -> Any:
    today = _today()
    f = filters()
    return jsonify(followups=list_tasks(f, today), summary=summary(today), today=today.isoformat())


@bp.get("/followups/<followup_id>")
@requires("followups.read")
def followup_page(followup_id: str) -> Any:
    task = _task(followup_id)
    (view,) = _views([task], _today())
    outcomes = list(
        FollowUpOutcome.select()
        .where(FollowUpOutcome.followup_id == task.id)
        .order_by(FollowUpOutcome.ingested_at)
    )
    return render(
        "followup.html",
        t=view,
        done_at=task.done_at,
        outcomes=outcomes,
        outcome_id=uuid7(),
        notice="已记录回访结果 (recorded)" if request.args.get("done") else None,
    )


def _form_outcome() -> dict[str, Any]:
    form = request.form
    reached = form.get("reached")
    satisfaction = (form.get("satisfaction") or "").strip()
    if satisfaction and not (satisfaction.isdigit() and len(satisfaction) == 1):
        raise ValidationError(
            "满意度须为1到5分, 或不填 (satisfaction: 1..5 or empty)", field="satisfaction"
        )
    return {
        "outcome_id": form.get("outcome_id"),
        "reached": {"1": True, "0": False}.get(reached or "", reached),
        "satisfaction": int(satisfaction) if satisfaction else None,
        "said": form.get("said", ""),
        "complaint": form.get("complaint", ""),
        "request": form.get("request", ""),
    }


@bp.post("/followups/<followup_id>/outcome")
@requires("followups.manage")
def record_outcome(followup_id: str) -> Any:
    task = _task(followup_id)
    now = utcnow()
    local = now.replace(tzinfo=dt.UTC).astimezone(current_app.config["HQ"].zone())
    _, changes = tasks.record_at_hq(
        _db(), task.id, _form_outcome(), current().actor, now, local.isoformat(timespec="seconds")
    )
    from hq.cli import push_changes  # hq.cli imports the app

    push_changes(current_app.config["HQ"], changes)  # best effort: else the change log
    return redirect(url_for("followups_console.followup_page", followup_id=task.id, done=1))


def _form_rule(kind: str) -> dict[str, Any]:
    form = request.form
    days = (form.get("days") or "").strip()
    if not days.isdigit() or len(days) > 4:
        raise ValidationError("天数须为整数 (days must be a whole number)", field="days")
    params: dict[str, Any] = {}
    for name in tasks.RULE_DEFAULTS.get(kind, (0, {}))[1]:
        text = (form.get(name) or "").strip()
        if name == "categories":
            params[name] = [c.strip() for c in text.replace("，", ",").split(",") if c.strip()]
        elif text:
            if not text.isdigit() or len(text) > 6:
                raise ValidationError(
                    f"{tasks.PARAM_LABELS[name]}须为整数 ({name} must be a whole number)",
                    field=name,
                )
            params[name] = int(text)
    return {"enabled": form.get("enabled") == "1", "days": int(days), "params": params}


@bp.post("/followups/rules/<kind>")
@requires("rules.publish")
def set_rule(kind: str) -> Any:
    if kind not in tasks.RULE_KINDS:
        raise NotFound(f"没有这种回访规则: {kind[:16]} (no such rule)", field="kind")
    tasks.set_rule(_db(), kind, by=current().actor, now=utcnow(), **_form_rule(kind))
    return redirect(url_for("followups_console.followups_page", saved=1) + "#rules")
