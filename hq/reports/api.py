"""``/api/reports``: the KPIs as JSON for the console's dashboard and report screens and
for integrations (docs/kpis.md). Every route needs ``reports.read`` and honours the
principal's stores: a store manager gets their store's figures only, an area manager
their area's (and its stores'); chain-wide figures are for chain-wide roles.

Query parameters: ``scope`` (chain | area | store | staff, default: the principal's
own: the chain, or their area or store), ``key`` (the area, store or staff code),
``kind`` (day | week | month | quarter | year, default month), ``period`` (e.g.
2026-11, 2026-W48, 2026-Q4, 2026, or any day in it; default: the one containing
today), ``keys`` (comma separated figure keys, default all).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw
from flask import Blueprint, current_app, jsonify, request

from core.errors import Forbidden, ValidationError
from hq.access.guard import current, requires
from hq.access.roles import Principal
from hq.reports import kpis
from hq.reports.periods import Period, Scope, parse_period, period_containing

bp = Blueprint("reports_api", __name__, url_prefix="/api/reports")


def _db() -> pw.Database:
    return current_app.extensions["hq_db"]


def own_scope(principal: Principal) -> Scope:
    """The scope a principal sees by default: the chain, or their area or store."""
    if principal.stores is None:
        return Scope("chain")
    if principal.role.scoped == "area" and principal.scope:
        return Scope("area", principal.scope)
    if principal.role.scoped == "store" and principal.scope:
        return Scope("store", principal.scope)
    raise Forbidden("无权查看报表范围 (no scope to report on)")


def check_scope(db: pw.Database, principal: Principal, scope: Scope) -> None:
    """Refuse a scope outside the principal's stores (403)."""
    if principal.stores is None:
        return
    if scope.kind == "chain":
        raise Forbidden("无权查看全连锁数据 (chain-wide figures are not for your role)")
    stores = kpis.stores_of(db, scope) or []
    if not stores or any(not principal.sees_store(s) for s in stores):
        raise Forbidden(f"无权查看{scope.label}的数据 (outside your stores)")


def scope_arg(db: pw.Database, principal: Principal, prefix: str = "") -> Scope:
    kind = request.args.get(f"{prefix}scope") or ""
    key = (request.args.get(f"{prefix}key") or "").strip()
    if len(key) > 64:
        raise ValidationError("范围代码过长 (key is too long)", field=f"{prefix}key")
    scope = own_scope(principal) if not kind else Scope(kind, key if kind != "chain" else "")
    check_scope(db, principal, scope)
    return scope


def period_arg(today: dt.date | None = None) -> Period:
    kind = request.args.get("kind") or "month"
    text = request.args.get("period")
    if not text:
        return period_containing(kind, today or dt.date.today())
    return parse_period(kind, text)


def keys_arg() -> list[str] | None:
    text = request.args.get("keys")
    if not text:
        return None
    return [k.strip() for k in text.split(",") if k.strip()][:100]


def _kpi(k: kpis.Kpi) -> dict[str, Any]:
    return {
        "key": k.key,
        "zh": k.zh,
        "en": k.en,
        "unit": k.unit,
        "cadence": k.cadence,
        "base": k.base,
        "kinds": list(k.kinds),
        "group": k.group,
        "better": k.better,
    }


@bp.get("/kpis")
@requires("reports.read")
def kpi_list() -> Any:
    """The figures' catalogue: names, units, cadences."""
    return jsonify(
        {"kpis": [_kpi(k) for k in kpis.KPIS], "staff_kpis": [_kpi(k) for k in kpis.STAFF_KPIS]}
    )


@bp.get("/figures")
@requires("reports.read")
def figures_route() -> Any:
    db = _db()
    scope = scope_arg(db, current())
    period = period_arg()
    values = kpis.figures(db, scope, period, keys_arg())
    return jsonify(
        {"scope": scope.to_dict(), "period": period.to_dict(), "figures": kpis.as_json(values)}
    )


@bp.get("/compare")
@requires("reports.read")
def compare_route() -> Any:
    db = _db()
    scope = scope_arg(db, current())
    out = kpis.compare(db, scope, period_arg(), keys_arg())
    return jsonify({"scope": scope.to_dict(), **kpis.as_json(out)})


@bp.get("/breakdown")
@requires("reports.read")
def breakdown_route() -> Any:
    db = _db()
    principal = current()
    within = (
        scope_arg(db, principal, "within_")
        if request.args.get("within_scope")
        else own_scope(principal)
    )
    check_scope(db, principal, within)
    by = request.args.get("by") or "store"
    period = period_arg()
    rows = kpis.breakdown(db, by, period, within)
    return jsonify(
        {
            "by": by,
            "within": within.to_dict(),
            "period": period.to_dict(),
            "rows": kpis.as_json(rows),
        }
    )


@bp.get("/series")
@requires("reports.read")
def series_route() -> Any:
    db = _db()
    scope = scope_arg(db, current())
    kind = request.args.get("kind") or "month"
    try:
        n = int(request.args.get("n") or 12)
    except ValueError:
        raise ValidationError("点数须为整数 (n must be an integer)", field="n") from None
    ending = period_arg().last_day
    keys = keys_arg() or ["sales_fen", "member_sales_share", "tickets", "new_members", "buyers"]
    rows = kpis.series(db, scope, kind, n, ending, keys)
    return jsonify({"scope": scope.to_dict(), "kind": kind, "points": kpis.as_json(rows)})
