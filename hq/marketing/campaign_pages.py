"""The console's 营销 · 活动 pages (a tab of 营销, Alt+L): the campaigns with their status
and figures, the 新建活动 form (audience, benefit, channels, message, schedule, control
group, cost), a campaign's page (progress per channel, skip reasons, the results from
hq/marketing/tracking.py, 发送 / 取消) and its call list for the staff (printable, .xlsx).

The pages call the engine's functions (hq/marketing/campaigns.py) as the JSON routes do
(hq/marketing/campaign_api.py); the form's fields become the engine's ``data`` here and
its ``ValidationError`` comes back on the form, next to the field it names. Reading needs
``marketing.read``; creating, launching and cancelling ``campaigns.manage``. The call
list shows a phone in full only to a role with ``members.pii`` (masked otherwise), a
store or area manager sees their stores' members only, and each call list is audited
as an export (``marketing.export``, target ``campaign:<id>:calls``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, redirect, request, url_for
from werkzeug.datastructures import MultiDict

from core.errors import HuiyuanError, ValidationError
from core.money import MoneyError, format_yuan, parse_yuan
from hq import audit
from hq.access.guard import current, requires
from hq.console import render
from hq.console.operations import ops_time
from hq.marketing import api, audience, campaign_api, campaigns, lists, segments, tracking
from hq.marketing.audience import LISTS
from hq.models import ListRun, utcnow
from hq.programme.coupons import list_templates
from hq.programme.staff import staff_names
from hq.reports.export import Column, Table, content_disposition, encode

bp = Blueprint("campaign_pages", __name__)

BENEFITS = {"none": "无", "coupon": "优惠券", "points": "赠送积分", "gift": "礼品"}
LAUNCHABLE = ("draft",)
CANCELLABLE = ("draft", "scheduled", "sending")
SMS_CHARS = 70  # one SMS of Chinese text; a longer one goes as parts of 67
SMS_PART_CHARS = 67
CHUNK = 500  # member ids per query of the call list


# ---- reading the form -------------------------------------------------------------------


def _text(form: MultiDict, name: str, zh: str, limit: int, required: bool = False) -> str:
    value = (form.get(name) or "").strip()
    if required and not value:
        raise ValidationError(f"请填写{zh} ({name} is required)", field=name)
    if len(value) > limit:
        raise ValidationError(f"{zh}最多 {limit} 个字 ({name}: at most {limit})", field=name)
    return value


def _int(form: MultiDict, name: str, zh: str, default: int | None = None) -> int:
    text = (form.get(name) or "").strip()
    if not text and default is not None:
        return default
    if not text.isdigit() or len(text) > 9:
        raise ValidationError(f"{zh}须为非负整数 ({name} must be a whole number)", field=name)
    return int(text)


def audience_of(form: MultiDict) -> dict[str, Any]:
    """The audience the form picked: a list for a month (or week), a saved segment, or
    a stored list run (the contract's ``Campaign.audience``)."""
    kind = form.get("audience_kind") or ""
    if kind == "list":
        which = form.get("list_kind") or ""
        if which not in LISTS:
            raise ValidationError("请选择名单 (pick a list)", field="list_kind")
        field = "list_week" if which in lists.WEEKLY else "list_month"
        cond = {"month": form.get("list_month") or "", "week": form.get("list_week") or ""}
        try:
            start = audience.list_bounds(which, cond)
        except ValidationError as exc:  # the same message, on the form's own field
            raise ValidationError(exc.message, field=field) from None
        return {"list": which, "start": start.isoformat()}
    if kind == "segment":
        return {"segment": _int(form, "segment", "分群")}
    if kind == "run":
        return {"run": _int(form, "run", "已生成名单")}
    raise ValidationError("请选择活动受众 (pick an audience)", field="audience_kind")


def benefit_of(form: MultiDict) -> dict[str, Any]:
    kind = form.get("benefit_kind") or "none"
    if kind == "coupon":
        return {"coupon": _text(form, "coupon", "优惠券模板", 64, required=True)}
    if kind == "points":
        points = _int(form, "points", "赠送积分")
        if points <= 0:
            raise ValidationError("赠送积分须大于0 (points must be positive)", field="points")
        return {"points": points}
    if kind == "gift":
        gift = {"gift": _text(form, "gift", "礼品说明", 64, required=True)}
        cost = _yuan_fen(form, "gift_cost", "礼品成本")
        return gift | ({"gift_cost_fen": cost} if cost else {})
    if kind != "none":
        raise ValidationError("权益类型无效 (benefit: none|coupon|points|gift)", field="benefit")
    return {}


def _yuan_fen(form: MultiDict, name: str, label: str) -> int:
    """A form's amount in yuan as a person writes it (0.05, 15), as integer fen
    (core.money); empty is 0."""
    text = (form.get(name) or "").strip() or "0"
    try:
        fen = parse_yuan(text)
    except MoneyError as exc:
        raise ValidationError(f"{label}: {exc}", field=name) from None
    if fen < 0:
        raise ValidationError(f"{label}不能为负 (must not be negative)", field=name)
    return fen


def data_of(form: MultiDict) -> dict[str, Any]:
    """The form as the engine's ``data`` (campaigns.create / update); a field the form
    gets wrong raises ValidationError naming the form's field."""
    channels = [c for c in form.getlist("channels") if c]
    unknown = [c for c in channels if c not in campaigns.CHANNELS]
    if unknown or not channels:
        raise ValidationError("请至少选择一个渠道 (pick a channel)", field="channels")
    return {
        "name": _text(form, "name", "活动名称", 64, required=True),
        "audience": audience_of(form),
        "benefit": benefit_of(form),
        "channels": channels,
        "text": _text(form, "text", "消息内容", 500),
        "send_at": _text(form, "send_at", "发送时间", 32, required=True),
        "window_days": _int(form, "window_days", "统计天数", 14),
        "control_pct": _int(form, "control_pct", "对照组比例", 0),
        "message_cost_fen": _yuan_fen(form, "message_cost", "每条成本"),
    }


# ---- showing a campaign -----------------------------------------------------------------


def summary_of(c: Any, with_results: bool) -> dict[str, Any]:
    """A campaign's row on the list and head of its page: the engine's ``as_dict`` (its
    Chinese labels), and tracking's results once launched (a store or area manager's over
    their stores' members)."""
    view = campaigns.as_dict(c, campaign_api.zone())
    view["send_at_text"] = view["send_at_local"].replace("T", " ")
    view["results"] = None
    if with_results and c.run_id is not None:
        r = tracking.results(api.db(), c.id, utcnow(), api.stores_arg(current()))
        r["window_text"] = {
            "from": ops_time(r["window"]["from"]),
            "to": ops_time(r["window"]["to"]),
            "closed": r["window"]["closed"],
        }
        view["results"] = r
    return view


def percent(x: Any) -> str:
    """A ratio (a Fraction, or None without a denominator) as 12.3% for the screen."""
    return "—" if x is None else f"{float(x) * 100:.1f}%"


# ---- the pages --------------------------------------------------------------------------


@bp.get("/marketing/campaigns")
@requires("marketing.read")
def campaigns_page() -> Any:
    """营销活动: every campaign, the newest first. The figures of launched ones (a few
    set-based queries each, seconds for a large audience) are not computed here: the
    page's script fills each row from the campaign's JSON twin, so the list loads at
    once however many campaigns there are."""
    rows = [summary_of(c, False) for c in campaigns.all_campaigns()]
    return render(
        "marketing/campaigns.html",
        rows=rows,
        can_manage=current().can("campaigns.manage"),
    )


@bp.get("/marketing/campaigns/<int:campaign_id>.json")
@requires("marketing.read")
def campaign_json(campaign_id: int) -> Any:
    """The campaign's page as JSON: ``as_dict``, progress, and tracking's results (ratios
    as floats for display, ``tracking.as_json``) once launched."""
    c = campaigns.get(campaign_id)
    launched = c.run_id is not None
    return jsonify(
        {
            "campaign": campaigns.as_dict(c, campaign_api.zone()),
            "progress": campaigns.progress(c.id) if launched else None,
            "results": tracking.as_json(
                tracking.results(api.db(), c.id, utcnow(), api.stores_arg(current()))
            )
            if launched
            else None,
        }
    )


def _form_page(
    values: MultiDict, campaign_id: int | None = None, problem: HuiyuanError | None = None
) -> Any:
    me = current()
    stores = api.stores_arg(me)
    month = api.today().replace(day=1)
    runs = lists.runs_for(month)
    chosen = values.get("run") or ""
    if chosen.isdigit() and len(chosen) < 10 and all(str(r.id) != chosen for r in runs):
        # a run of another month, passed by its button on the 营销 page
        extra = ListRun.get_or_none(ListRun.id == int(chosen))
        if extra is not None:
            runs.append(extra)
    run_views = [api.run_dict(r, stores) for r in runs]
    # a saved segment is counted when it is picked (the page asks /api/marketing/count):
    # counting every one here would take seconds each over a chain's members
    seg_views = [segments.as_dict(s) for s in segments.all_segments()]
    return render(
        "marketing/campaign_form.html",
        status=problem.http_status if problem else 200,
        problem=problem.message if problem else None,
        bad_field=(problem.field if problem else None) or "",
        v=values,
        campaign_id=campaign_id,
        runs=run_views,
        saved=seg_views,
        lists=LISTS,
        templates=[t for t in list_templates() if t.get("active", True)],
        channels=campaigns.CHANNELS,
        benefits=BENEFITS,
        placeholders=campaigns.PLACEHOLDERS,
        month=month.strftime("%Y-%m"),
        zone=current_app.config["HQ"].timezone,
        sms_chars=SMS_CHARS,
        sms_part_chars=SMS_PART_CHARS,
    )


def _default_values() -> MultiDict:
    """A new campaign's form: the audience the 营销 page's button passed (``run``,
    ``segment`` or ``list`` + ``month``/``week``), tomorrow 10:00, 14 days, SMS."""
    args = request.args
    tomorrow = api.today() + dt.timedelta(days=1)
    values = MultiDict(
        {
            "send_at": f"{tomorrow.isoformat()}T10:00",
            "window_days": "14",
            "control_pct": "0",
            "message_cost": "0.05",
            "benefit_kind": "none",
            "channels": "sms",
        }
    )
    if args.get("run"):
        values.update({"audience_kind": "run", "run": args["run"][:12]})
    elif args.get("segment"):
        values.update({"audience_kind": "segment", "segment": args["segment"][:12]})
    elif args.get("list"):
        values.update(
            {
                "audience_kind": "list",
                "list_kind": args["list"][:16],
                "list_month": (args.get("month") or "")[:7],
                "list_week": (args.get("week") or "")[:10],
            }
        )
    return values


@bp.get("/marketing/campaigns/new")
@requires("campaigns.manage")
def new_page() -> Any:
    return _form_page(_default_values())


@bp.post("/marketing/campaigns")
@requires("campaigns.manage")
def create_form() -> Any:
    try:
        data = data_of(request.form)
        c = campaigns.create(api.db(), data, current().actor, utcnow(), campaign_api.zone())
    except HuiyuanError as exc:
        return _form_page(request.form, problem=exc)
    return redirect(url_for("campaign_pages.campaign_page", campaign_id=c.id, saved=1))


def _values_of(c: Any) -> MultiDict:
    """A draft back in the form's fields."""
    values = MultiDict(
        {
            "name": c.name,
            "text": c.text,
            "send_at": ops_time(c.send_at, "%Y-%m-%dT%H:%M"),
            "window_days": str(c.window_days),
            "control_pct": str(c.control_pct),
            "message_cost": format_yuan(c.message_cost_fen, ""),
        }
    )
    spec = c.audience or {}
    if "list" in spec:
        start = dt.date.fromisoformat(spec["start"])
        weekly = spec["list"] in lists.WEEKLY
        values.update(
            {
                "audience_kind": "list",
                "list_kind": spec["list"],
                "list_month": start.strftime("%Y-%m"),
                "list_week": start.isoformat() if weekly else "",
            }
        )
    elif "segment" in spec:
        values.update({"audience_kind": "segment", "segment": str(spec["segment"])})
    elif "run" in spec:
        values.update({"audience_kind": "run", "run": str(spec["run"])})
    benefit = c.benefit or {}
    kind = next((k for k in ("coupon", "points", "gift") if k in benefit), "none")
    values["benefit_kind"] = kind
    if kind != "none":
        values[kind] = str(benefit[kind])
    if benefit.get("gift_cost_fen"):
        values["gift_cost"] = format_yuan(benefit["gift_cost_fen"], "")
    for ch in c.channels or []:
        values.add("channels", ch)
    return values


@bp.get("/marketing/campaigns/<int:campaign_id>/edit")
@requires("campaigns.manage")
def edit_page(campaign_id: int) -> Any:
    c = campaigns.get(campaign_id)
    if c.status != "draft":
        return redirect(url_for("campaign_pages.campaign_page", campaign_id=c.id))
    return _form_page(_values_of(c), campaign_id=c.id)


@bp.post("/marketing/campaigns/<int:campaign_id>")
@requires("campaigns.manage")
def update_form(campaign_id: int) -> Any:
    try:
        data = data_of(request.form)
        c = campaigns.update(
            api.db(), campaign_id, data, current().actor, utcnow(), campaign_api.zone()
        )
    except HuiyuanError as exc:
        return _form_page(request.form, campaign_id=campaign_id, problem=exc)
    return redirect(url_for("campaign_pages.campaign_page", campaign_id=c.id, saved=1))


@bp.get("/marketing/campaigns/<int:campaign_id>")
@requires("marketing.read")
def campaign_page(
    campaign_id: int, problem: HuiyuanError | None = None, notice: str | None = None
) -> Any:
    """A campaign: what it is, its progress per channel and why sends were skipped, its
    results (tracking), and 发送 / 取消 for ``campaigns.manage``."""
    c = campaigns.get(campaign_id)
    view = summary_of(c, True)
    progress = campaigns.progress(c.id) if c.status != "draft" else None
    me = current()
    if notice is None:
        notice = {"1": "已保存", "launched": "活动已发送, 消息将按发送时间发出"}.get(
            request.args.get("saved", "")
        )
    return render(
        "marketing/campaign.html",
        status=problem.http_status if problem else 200,
        problem=problem.message if problem else None,
        notice=notice,
        c=view,
        text=c.text,
        progress=progress,
        r=view["results"],
        channels=campaigns.CHANNELS,
        send_statuses=campaigns.SEND_STATUSES,
        skip_reasons=campaigns.SKIP_REASONS,
        can_manage=me.can("campaigns.manage"),
        can_launch=c.status in LAUNCHABLE,
        can_cancel=c.status in CANCELLABLE,
        has_calls="call" in (c.channels or []) and c.status != "draft",
        cost_fen=c.message_cost_fen,
        window_days=c.window_days,
        control_pct=c.control_pct,
        pct=percent,
    )


@bp.post("/marketing/campaigns/<int:campaign_id>/launch")
@requires("campaigns.manage")
def launch_form(campaign_id: int) -> Any:
    try:
        campaigns.launch(api.db(), campaign_id, current().actor, utcnow(), api.today())
    except HuiyuanError as exc:
        return campaign_page(campaign_id, problem=exc)
    return redirect(
        url_for("campaign_pages.campaign_page", campaign_id=campaign_id, saved="launched")
    )


@bp.post("/marketing/campaigns/<int:campaign_id>/cancel")
@requires("campaigns.manage")
def cancel_form(campaign_id: int) -> Any:
    try:
        campaigns.cancel(api.db(), campaign_id, current().actor, utcnow())
    except HuiyuanError as exc:
        return campaign_page(campaign_id, problem=exc)
    return redirect(url_for("campaign_pages.campaign_page", campaign_id=campaign_id))


# ---- the call list ----------------------------------------------------------------------

CALL_COLUMNS = [
    Column("maintainer", "维护人"),
    Column("store", "门店"),
    Column("member_id", "会员号"),
    Column("name", "姓名"),
    Column("phone", "手机号"),
    Column("tier", "等级"),
    Column("benefit", "权益"),
    Column("reached", "是否接通"),
    Column("note", "会员反馈"),
]


def call_rows(campaign_id: int) -> list[dict[str, Any]]:
    """The campaign's call list as the signed-in role may see it: the JSON route's rows
    (hq/marketing/campaign_api.py: treated members who consent to calls, within the
    principal's stores or the ``store`` asked for; name and phone in full for a role with
    ``members.pii``, as staff dial from it, masked otherwise) with the maintainer's name,
    ordered by maintainer, store and member."""
    me = current()
    pii = me.can("members.pii")
    rows = campaign_api.call_rows(campaign_id, api.stores_arg(me), pii)
    staff = staff_names(r["maintainer"] for r in rows)
    for r in rows:
        code = r["maintainer"]
        r["maintainer_code"] = code
        r["maintainer"] = f"{staff.get(code, '')} {code}".strip() if code else "未分配 (门店)"
        r["store"] = f"{r['store']} {r['store_name']}".strip() or "—"
        r["name"] = r["name"] or "—"
        r["phone"] = r["phone"] or "—"
        r["tier"] = r["tier"] or "—"
    rows.sort(
        key=lambda r: (r["maintainer_code"] == "", r["maintainer_code"], r["store"], r["member_id"])
    )
    return rows


def grouped(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as maintainer → store → members, in the rows' order."""
    out: list[dict[str, Any]] = []
    for row in rows:
        if not out or out[-1]["maintainer"] != row["maintainer"]:
            out.append({"maintainer": row["maintainer"], "stores": []})
        stores = out[-1]["stores"]
        if not stores or stores[-1]["store"] != row["store"]:
            stores.append({"store": row["store"], "rows": []})
        stores[-1]["rows"].append(row)
    return out


def _audit_calls(c: Any, fmt: str, rows: int) -> None:
    database = api.db()
    me = current()
    scope = "全连锁" if me.stores is None else ",".join(sorted(me.stores))
    with database.atomic():
        audit.record(
            database,
            me.actor,
            "marketing.export",
            f"campaign:{c.id}:calls",
            format=fmt,
            rows=rows,
            scope=scope,
            phones="full" if me.can("members.pii") else "masked",
        )


def _call_campaign(campaign_id: int) -> Any:
    c = campaigns.get(campaign_id)
    if "call" not in (c.channels or []):
        raise ValidationError(
            "此活动没有电话渠道 (the campaign has no call channel)", field="channels"
        )
    return c


@bp.get("/marketing/campaigns/<int:campaign_id>/calls")
@requires("marketing.read")
def calls_page(campaign_id: int) -> Any:
    """电话回访名单, printable: one section per maintainer, then per store."""
    c = _call_campaign(campaign_id)
    rows = call_rows(c.id)
    _audit_calls(c, "html", len(rows))
    return render(
        "marketing/campaign_calls.html",
        c=summary_of(c, False),
        groups=grouped(rows),
        total=len(rows),
        pii=current().can("members.pii"),
        printed_at=ops_time(utcnow()),
    )


@bp.get("/marketing/campaigns/<int:campaign_id>/calls.xlsx")
@requires("marketing.read")
def calls_xlsx(campaign_id: int) -> Any:
    c = _call_campaign(campaign_id)
    rows = call_rows(c.id)
    benefit = campaigns.benefit_label(c.benefit or {})
    me = current()
    table = Table(
        f"{c.name} 电话回访名单",
        CALL_COLUMNS,
        [
            [
                r["maintainer"],
                r["store"],
                r["member_id"],
                r["name"],
                r["phone"],
                r["tier"],
                benefit,
                "",
                "",
            ]
            for r in rows
        ],
        notes=[
            ("活动", f"{c.id} {c.name}"),
            ("范围", "全连锁" if me.stores is None else ",".join(sorted(me.stores))),
            ("导出人", me.display_name or me.actor),
        ],
    )
    _audit_calls(c, "xlsx", len(rows))
    body, mime = encode(table, "xlsx", generated_at=utcnow())
    resp = Response(body, mimetype=mime)
    resp.headers["Content-Disposition"] = content_disposition(f"活动{c.id}_电话回访名单.xlsx")
    return resp
