"""The console's 营销 pages (Alt+L): this month's lists and any list for any period
(per store), the segment builder with its live count, saved segments, exports. Each
page renders what ``/api/marketing`` returns (hq/marketing/api.py): the same builders,
the same masking; the exports are the API's own route."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, request, url_for

from core.errors import HuiyuanError, ValidationError
from hq import audit
from hq.access.guard import current, requires
from hq.console import render
from hq.marketing import api, audience, lists, segments, settings
from hq.marketing.audience import LIFECYCLE, LISTS, QUADRANTS
from hq.models import Member, Store, utcnow

bp = Blueprint("marketing", __name__)
SHOWN = 100


def _stores() -> list[Store]:
    me = current()
    return [s for s in Store.select().order_by(Store.code) if me.sees_store(s.code)]


@bp.get("/marketing")
@requires("marketing.read")
def lists_page() -> Any:
    """本月名单 (the stored runs of the month), and a list of any period per store."""
    me = current()
    month_text = request.args.get("month") or api.today().strftime("%Y-%m")
    problem, status = None, 200
    view: dict[str, Any] | None = None
    runs: list[dict[str, Any]] = []
    try:
        stores = api.stores_arg(me)
        month = audience.list_bounds("new_members", {"month": month_text})
        runs = [api.run_dict(r, stores) for r in lists.runs_for(month)]
        if request.args.get("run"):
            run = lists.get_run(int(request.args["run"]))
            b = lists.run_builder(api.db(), run, stores)
            view = {
                "title": lists.describe(run.kind, run.start) + " · 已生成名单",
                "count": audience.count(b),
                "kind": run.kind,
                "rows": lists.rows_for(
                    api.db(), b, me, kind=run.kind, start=run.start, limit=SHOWN, with_day=True
                ),
                "export": {"run": run.id},
            }
        elif request.args.get("kind"):
            kind, start = api.list_args()
            b = api.list_builder(kind, start, stores)
            view = {
                "title": lists.describe(kind, start),
                "count": audience.count(b),
                "kind": kind,
                "rows": lists.rows_for(api.db(), b, me, kind=kind, start=start, limit=SHOWN),
                "export": {
                    "kind": kind,
                    "month": request.args.get("month") or "",
                    "week": request.args.get("week") or "",
                },
            }
    except HuiyuanError as exc:
        problem, status = exc.message, exc.http_status
    except ValueError:
        problem, status = "参数无效 (bad parameter)", 400
    store = request.args.get("store") or ""
    return render(
        "marketing_lists.html",
        status=status,
        problem=problem,
        month=month_text,
        runs=runs,
        view=view,
        lists=LISTS,
        stores=_stores(),
        store=store,
        args=request.args,
        shown=SHOWN,
    )


@bp.get("/marketing/segments")
@requires("marketing.read")
def segments_page(problem: str | None = None, status: int = 200, notice: str | None = None) -> Any:
    """分群: the builder (marketing.js asks the live count), the saved segments, the
    chain's thresholds."""
    me = current()
    stores = api.stores_arg(me)
    saved = []
    for seg in segments.all_segments():
        count = audience.count(api.spec_builder({"conditions": seg.conditions}, stores))
        saved.append(segments.as_dict(seg, count))

    def distinct(column: Any) -> list[str]:
        return [
            v
            for (v,) in Member.select(column)
            .distinct()
            .where(column.is_null(False))
            .order_by(column)
            .tuples()
        ][:50]

    values = settings.current(api.db())
    if notice is None and request.args.get("saved") == "settings":
        notice = "阈值已保存"
    return render(
        "marketing_segments.html",
        status=status,
        problem=problem,
        notice=notice,
        thresholds=[(s, values[s.name]) for s in settings.SETTINGS],
        saved=saved,
        lifecycle=LIFECYCLE,
        quadrants=QUADRANTS,
        stores=_stores(),
        card_types=distinct(Member.card_type),
        tiers=distinct(Member.tier),
        tags=list(audience.AT_RISK_TAGS),
        can_manage=me.can("marketing.manage"),
    )


@bp.post("/marketing/settings")
@requires("marketing.manage")
def settings_form() -> Any:
    """The thresholds form: every field an integer in its range, audited."""
    changes: dict[str, object] = {}
    try:
        for s in settings.SETTINGS:
            text = (request.form.get(s.name) or "").strip()
            if text:
                if not text.isdigit() or len(text) > 5:
                    raise ValidationError(
                        f"{s.zh} 须为整数 ({s.name} must be an integer)", field=s.name
                    )
                changes[s.name] = int(text)
        database = api.db()
        me = current()
        with database.atomic():
            values = settings.update(database, changes, me.actor, utcnow())
            audit.record(database, me.actor, "marketing.settings", "thresholds", **values)
    except HuiyuanError as exc:
        return segments_page(problem=exc.message, status=exc.http_status)
    return redirect(url_for("marketing.segments_page", saved="settings"))
