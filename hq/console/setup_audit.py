"""The console's audit log (审计日志): search by action, actor, target, store and the
chain's business days, a page at a time; the same search as JSON at ``/api/audit``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from werkzeug.datastructures import MultiDict

from core.days import parse_day
from core.errors import ValidationError
from hq import audit
from hq.access.guard import requires
from hq.console import render
from hq.models import AuditEntry

bp = Blueprint("setup_audit", __name__)

PER_PAGE = 50

# how the page names the actions it knows; others are shown as they are stored
ACTION_LABELS: dict[str, str] = {
    "rules.publish": "发布规则",
    "offline_policy.set": "发布离线策略",
    "offline_policy.remove": "删除门店离线策略",
    "enrol.create": "生成门店开通码",
    "user.add": "新增账号",
    "user.set_role": "修改角色",
    "user.reset_password": "重置密码",
    "user.activate": "启用账号",
    "user.deactivate": "停用账号",
    "user.locked": "账号锁定",
    "token.issue": "签发令牌",
    "token.revoke": "吊销令牌",
    "points.adjust": "调整积分",
    "tier.set": "手动设置等级",
}


def _whole(text: str | None, name: str, default: int, hi: int) -> int:
    text = (text or "").strip()
    if not text:
        return default
    if not text.isdigit() or len(text) > 7 or not 1 <= int(text) <= hi:
        raise ValidationError(
            f"{name} 须为 1-{hi} 的整数 ({name} must be a whole number 1..{hi})", field=name
        )
    return int(text)


def _utc_start(day: dt.date) -> dt.datetime:
    """The naive-UTC instant the chain's business day ``day`` begins."""
    zone = current_app.config["HQ"].zone()
    local = dt.datetime.combine(day, dt.time.min, tzinfo=zone)
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def search_args(args: MultiDict[str, str]) -> dict[str, Any]:
    """The query string as ``hq.audit.search`` arguments; a bad one is a ValidationError
    naming it. ``from``/``to`` are the chain's business days, both inclusive."""
    since_day = parse_day(args.get("from"), "from")
    until_day = parse_day(args.get("to"), "to")
    if since_day and until_day and until_day < since_day:
        raise ValidationError("结束日期早于开始日期 (to is before from)", field="to")
    return {
        "action": args.get("action"),
        "actor": args.get("actor"),
        "target": args.get("target"),
        "store": args.get("store"),
        "since": _utc_start(since_day) if since_day else None,
        "until": _utc_start(until_day + dt.timedelta(days=1)) if until_day else None,
        "page": _whole(args.get("page"), "page", 1, 1_000_000),
        "per_page": _whole(args.get("per_page"), "per_page", PER_PAGE, audit.MAX_PAGE),
    }


def _local(iso: str) -> str:
    at = dt.datetime.fromisoformat(iso).replace(tzinfo=dt.UTC)
    return at.astimezone(current_app.config["HQ"].zone()).strftime("%Y-%m-%d %H:%M:%S")


@bp.get("/audit")
@requires("audit.read")
def audit_page() -> Any:
    db = current_app.extensions["hq_db"]
    form = {
        k: request.args.get(k, "") for k in ("action", "actor", "target", "store", "from", "to")
    }
    try:
        result = audit.search(db, **search_args(request.args))
    except ValidationError as exc:
        return render(
            "audit.html", 400, form=form, result=None, problem=exc.message, actions=_actions()
        )
    for row in result["entries"]:
        row["local_at"] = _local(row["at"])
        row["label"] = ACTION_LABELS.get(row["action"], "")
    keep = {k: v for k, v in form.items() if v}
    return render(
        "audit.html",
        form=form,
        result=result,
        keep=keep,
        actions=_actions(),
        zone=current_app.config["HQ"].timezone,
    )


def _actions() -> list[str]:
    """The actions in the log, for the filter's suggestions (a bounded distinct scan)."""
    rows = AuditEntry.select(AuditEntry.action).distinct().order_by(AuditEntry.action).limit(200)
    return [r.action for r in rows]


@bp.get("/api/audit")
@requires("audit.read")
def audit_api() -> Any:
    db = current_app.extensions["hq_db"]
    return jsonify(audit.search(db, **search_args(request.args)))
