"""``/api/marketing``: the lists, segments and their exports as JSON (docs/marketing.md).

Reading needs ``marketing.read``; saving segments, producing a list run and changing
the thresholds need ``marketing.manage``. A store or area manager sees their stores'
members only (registered there); every personal field is masked as their role may see
it (hq/access/masking.py), and every export is audited (``marketing.export``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw
from flask import Blueprint, Response, current_app, jsonify, request

from core.errors import ValidationError
from hq import audit
from hq.access.guard import current, requires
from hq.access.roles import Principal
from hq.marketing import audience, lists, segments, settings
from hq.marketing.audience import LISTS, Builder
from hq.models import Store, utcnow
from hq.reports.export import content_disposition, encode

bp = Blueprint("marketing_api", __name__, url_prefix="/api/marketing")
EXPORT_FORMATS = ("xlsx", "csv")
PAGE_MAX = 1000


def db() -> pw.Database:
    return current_app.extensions["hq_db"]


def today() -> dt.date:
    return current_app.config["HQ"].business_day(utcnow())


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError("请求须为 JSON 对象 (send a JSON object)", field="body")
    return body


def page_args() -> tuple[str, int]:
    after = request.args.get("after") or ""
    if len(after) > 36:
        raise ValidationError("after 过长 (after is too long)", field="after")
    try:
        limit = int(request.args.get("limit") or 100)
    except ValueError:
        raise ValidationError("limit 须为整数 (limit must be an integer)", field="limit") from None
    if not 1 <= limit <= PAGE_MAX:
        raise ValidationError(f"limit 须为1到{PAGE_MAX} (limit: 1..{PAGE_MAX})", field="limit")
    return after, limit


def stores_arg(principal: Principal) -> list[str] | None:
    """The stores asked for (``store`` or ``area``), within the principal's; None: the
    whole chain (chain-wide roles only)."""
    store = (request.args.get("store") or "").strip()
    area = (request.args.get("area") or "").strip()
    if store:
        if len(store) > 32:
            raise ValidationError("门店代码过长 (store is too long)", field="store")
        principal.require_store(store)
        return [store]
    if area:
        codes = [s.code for s in Store.select(Store.code).where(Store.area == area[:32])]
        if not codes:
            raise ValidationError(
                f"区域没有门店: {area[:32]} (no stores in that area)", field="area"
            )
        for code in codes:
            principal.require_store(code)
        return codes
    return None if principal.stores is None else sorted(principal.stores)


def list_args() -> tuple[str, dt.date]:
    kind = request.args.get("kind") or ""
    if kind not in LISTS:
        raise ValidationError(
            f"名单类型无效 (kind must be one of {', '.join(LISTS)})", field="kind"
        )
    cond = {"list": kind, "month": request.args.get("month") or today().strftime("%Y-%m")}
    cond["week"] = request.args.get("week") or today().isoformat()
    return kind, audience.list_bounds(kind, cond)


def restrict(b: Builder, stores: list[str] | None) -> Builder:
    if stores is not None:
        b.where.append(b.one_of("m.registered_store", stores))
    return b


def list_builder(kind: str, start: dt.date, stores: list[str] | None) -> Builder:
    return restrict(lists.builder(db(), kind, start, None, today()), stores)


def spec_builder(spec: Any, stores: list[str] | None) -> Builder:
    b = audience.compile_spec(db(), spec, settings.current(db()), today())
    return restrict(b, stores)


def _rows(b: Builder, **kw: Any) -> list[dict[str, Any]]:
    after, limit = page_args()
    return [r.to_dict() for r in lists.rows_for(db(), b, current(), after=after, limit=limit, **kw)]


# ---- lists ------------------------------------------------------------------------------


@bp.get("/lists")
@requires("marketing.read")
def list_route() -> Any:
    """A list computed now for any month or week: its count and a page of rows."""
    kind, start = list_args()
    stores = stores_arg(current())
    b = list_builder(kind, start, stores)
    return jsonify(
        {
            "kind": kind,
            "title": lists.describe(kind, start),
            "start": start.isoformat(),
            "stores": stores,
            "count": audience.count(b),
            "rows": _rows(b, kind=kind, start=start),
        }
    )


def run_dict(run: Any, stores: list[str] | None) -> dict[str, Any]:
    count = run.members
    if stores is not None:
        count = audience.count(lists.run_builder(db(), run, stores))
    return {
        "id": run.id,
        "kind": run.kind,
        "title": lists.describe(run.kind, run.start),
        "start": run.start.isoformat(),
        "members": count,
        "made_at": run.made_at.isoformat(timespec="seconds"),
        "made_by": run.made_by,
    }


@bp.get("/runs")
@requires("marketing.read")
def runs_route() -> Any:
    """The stored lists of a month (``month``, default this one): what the scheduler
    made on the 1st and on each Monday."""
    month = audience.list_bounds(
        "new_members", {"month": request.args.get("month") or today().strftime("%Y-%m")}
    )
    stores = stores_arg(current())
    return jsonify(
        {
            "month": month.strftime("%Y-%m"),
            "runs": [run_dict(r, stores) for r in lists.runs_for(month)],
        }
    )


@bp.get("/runs/<int:run_id>")
@requires("marketing.read")
def run_route(run_id: int) -> Any:
    run = lists.get_run(run_id)
    stores = stores_arg(current())
    b = lists.run_builder(db(), run, stores)
    return jsonify(
        {**run_dict(run, stores), "rows": _rows(b, kind=run.kind, start=run.start, with_day=True)}
    )


@bp.post("/runs")
@requires("marketing.manage")
def produce_route() -> Any:
    """Store a list now (idempotent: the month's or week's run if there is one)."""
    body = _body()
    kind = body.get("kind")
    if kind not in LISTS:
        raise ValidationError(
            f"名单类型无效 (kind must be one of {', '.join(LISTS)})", field="kind"
        )
    start = audience.list_bounds(kind, body)
    me = current()
    run, made = lists.produce(db(), kind, start, utcnow(), me.actor, today())
    return jsonify({"made": made, "run": run_dict(run, None)}), 201 if made else 200


# ---- segments ---------------------------------------------------------------------------


@bp.post("/count")
@requires("marketing.read")
def count_route() -> Any:
    """The live count of an audience spec (the segment builder asks on every change)."""
    b = spec_builder(_body(), stores_arg(current()))
    return jsonify({"count": audience.count(b)})


@bp.post("/audience")
@requires("marketing.read")
def audience_route() -> Any:
    """A keyset page of an audience's member ids (``after``, ``limit`` in the query)."""
    b = spec_builder(_body(), stores_arg(current()))
    after, limit = page_args()
    ids = audience.member_ids(b, after, limit)
    return jsonify({"member_ids": ids, "next_after": ids[-1] if len(ids) == limit else None})


@bp.get("/segments")
@requires("marketing.read")
def segments_route() -> Any:
    stores = stores_arg(current())
    out = []
    for seg in segments.all_segments():
        out.append(
            segments.as_dict(
                seg, audience.count(spec_builder({"conditions": seg.conditions}, stores))
            )
        )
    return jsonify({"segments": out})


@bp.post("/segments")
@requires("marketing.manage")
def create_segment() -> Any:
    seg = segments.save(db(), _body(), current().actor, utcnow(), today())
    return jsonify({"segment": segments.as_dict(seg)}), 201


@bp.get("/segments/<int:segment_id>")
@requires("marketing.read")
def segment_route(segment_id: int) -> Any:
    seg = segments.get(segment_id)
    b = spec_builder({"conditions": seg.conditions}, stores_arg(current()))
    return jsonify({"segment": segments.as_dict(seg, audience.count(b)), "rows": _rows(b)})


@bp.post("/segments/<int:segment_id>/snapshot")
@requires("marketing.manage")
def snapshot_route(segment_id: int) -> Any:
    """Store the segment's members as of today: a stable audience for a campaign (one
    per segment and day)."""
    seg = segments.get(segment_id)
    run, made = lists.snapshot_segment(db(), seg, utcnow(), current().actor, today())
    return jsonify({"made": made, "run": run_dict(run, None)}), 201 if made else 200


@bp.put("/segments/<int:segment_id>")
@requires("marketing.manage")
def update_segment(segment_id: int) -> Any:
    seg = segments.save(db(), _body(), current().actor, utcnow(), today(), segment_id)
    return jsonify({"segment": segments.as_dict(seg)})


@bp.delete("/segments/<int:segment_id>")
@requires("marketing.manage")
def delete_segment(segment_id: int) -> Any:
    seg = segments.get(segment_id)
    seg.delete_instance()
    return jsonify({"deleted": segment_id})


# ---- thresholds -------------------------------------------------------------------------


@bp.get("/settings")
@requires("marketing.read")
def settings_route() -> Any:
    values = settings.current(db())
    return jsonify(
        {
            "settings": [
                {
                    "name": s.name,
                    "zh": s.zh,
                    "value": values[s.name],
                    "default": s.default,
                    "low": s.low,
                    "high": s.high,
                }
                for s in settings.SETTINGS
            ]
        }
    )


@bp.put("/settings")
@requires("marketing.manage")
def update_settings() -> Any:
    database = db()
    me = current()
    with database.atomic():
        values = settings.update(database, _body(), me.actor, utcnow())
        audit.record(database, me.actor, "marketing.settings", "thresholds", **values)
    return jsonify({"settings": values})


# ---- exports ----------------------------------------------------------------------------


@bp.get("/export")
@requires("marketing.read")
def export() -> Any:
    """A list (``kind`` + ``month``/``week``), a stored run (``run``) or a saved segment
    (``segment``) as .xlsx or CSV, masked for the exporter, audited."""
    fmt = request.args.get("format", "xlsx")
    if fmt not in EXPORT_FORMATS:
        raise ValidationError(
            f"导出格式须为 xlsx 或 csv (format must be xlsx or csv), got {fmt[:10]!r}",
            field="format",
        )
    database = db()
    me = current()
    stores = stores_arg(me)
    kw: dict[str, Any] = {}
    if request.args.get("run"):
        try:
            run = lists.get_run(int(request.args["run"]))
        except ValueError:
            raise ValidationError("run 须为整数 (run must be an integer)", field="run") from None
        b = lists.run_builder(database, run, stores)
        kind, title, target = run.kind, lists.describe(run.kind, run.start), f"run:{run.id}"
        kw = {"kind": run.kind, "start": run.start, "with_day": True}
    elif request.args.get("segment"):
        try:
            seg = segments.get(int(request.args["segment"]))
        except ValueError:
            raise ValidationError(
                "segment 须为整数 (segment must be an integer)", field="segment"
            ) from None
        b = spec_builder({"conditions": seg.conditions}, stores)
        kind, title, target = None, f"分群 {seg.name}", f"segment:{seg.id}"
    else:
        kind, start = list_args()
        b = list_builder(kind, start, stores)
        title, target = lists.describe(kind, start), f"list:{kind}:{start}"
        kw = {"kind": kind, "start": start}
    rows = lists.all_rows(database, b, me, **kw)
    now = utcnow()
    scope = "全连锁" if stores is None else ",".join(stores)
    table = lists.table(
        title, rows, kind, [("范围", scope), ("导出人", me.display_name or me.actor)]
    )
    with database.atomic():
        audit.record(
            database,
            me.actor,
            "marketing.export",
            target,
            store=stores[0] if stores and len(stores) == 1 else None,
            format=fmt,
            rows=len(rows),
            scope=scope,
        )
    body, mime = encode(table, fmt, generated_at=now)
    filename = f"{title.split(' (')[0].replace(' ', '_')}.{fmt}"
    resp = Response(body, mimetype=mime)
    resp.headers["Content-Disposition"] = content_disposition(filename)
    return resp
