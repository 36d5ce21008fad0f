"""Campaigns (docs/campaigns.md, "Campaigns"): an audience, a benefit, channels and a
schedule, made as a draft, launched once, sent by hq/marketing/sending.py.

- ``create`` / ``update`` (drafts only) check every field and name the bad one.
- ``launch`` freezes the audience to a stored list run (hq/marketing/lists.py), splits it
  into the treated and a held-out control group by a stable hash of campaign and member,
  and writes one ``CampaignSend`` (pending, not before ``send_at``) per treated member and
  message channel, page by page with bulk inserts that ignore rows already there: a
  launch cut short and run again finishes the job, and a second launch changes nothing.
- ``give_benefits``: the benefit, once per treated member, in the caller's transaction
  with ``CampaignRecipient.benefit_ref`` (the sender calls it with a member's first sent
  message; a call-only campaign gives it at launch).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import string
from typing import Any
from zoneinfo import ZoneInfo

import peewee as pw

from core.coupons import CouponTemplate as CouponRules
from core.errors import Conflict, NotFound, ValidationError
from hq import audit, privacy
from hq.changes import ChangeSet, flush_changes
from hq.marketing import audience, lists, segments
from hq.marketing.audience import LISTS
from hq.models import (
    Campaign,
    CampaignRecipient,
    CampaignSend,
    CouponTemplate,
    ListRun,
    Member,
)

PLACEHOLDERS = {
    "name": "会员称呼",
    "coupon": "券面额",
    "points": "赠送积分",
    "link": "会员页链接",
    "store": "常去门店",
}
CHANNELS = {"sms": "短信", "wechat": "微信模板消息", "call": "电话回访"}
MESSAGE_CHANNELS = ("sms", "wechat")  # the channels the sender sends; "call" is a list
STATUSES = {
    "draft": "草稿",
    "scheduled": "已排期",
    "sending": "发送中",
    "done": "已完成",
    "cancelled": "已取消",
}
SEND_STATUSES = {
    "pending": "待发送",
    "sending": "发送中",
    "sent": "已发送",
    "delivered": "已送达",
    "failed": "失败",
    "skipped": "未发送",
}
SKIP_REASONS = {
    "consent": "未同意接收",
    "unsubscribed": "已退订",
    "cap": "超过频次上限",
    "no_contact": "无联系方式",
    "cancelled": "活动已取消",
    "merged": "会员已合并",  # sent to the member it was merged into instead
}
FIELDS = (
    "name",
    "audience",
    "benefit",
    "channels",
    "text",
    "send_at",
    "window_days",
    "control_pct",
    "message_cost_fen",
)
TEXT_MAX = 300  # characters before placeholders; an SMS also carries the unsubscribe line
NAME_MAX = 64
GIFT_MAX = 64
GIFT_COST_MAX = 1_000_000  # fen a gift: ¥10,000
POINTS_MAX = 100_000
COST_MAX = 100_000  # fen per message
PAGE = 2000  # members per launch page (one transaction, two bulk inserts)
DEFAULT_ZONE = "Asia/Shanghai"  # HqConfig.timezone's default


def _bad(field: str, zh: str, en: str) -> ValidationError:
    return ValidationError(f"{zh} ({field}: {en})", field=field)


# ---- checking a campaign's fields -------------------------------------------------------


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad("name", "请填写活动名称", "required")
    if len(value.strip()) > NAME_MAX:
        raise _bad("name", f"活动名称不超过{NAME_MAX}字", f"at most {NAME_MAX} characters")
    return value.strip()


ID_MAX = 2**31 - 1  # an integer column's largest value (PostgreSQL refuses a larger one)


def _positive_id(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ID_MAX:
        raise _bad("audience", f"{field} 须为正整数", f"{field} must be a positive integer")
    return value


def _audience(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or len(value) == 0:
        raise _bad("audience", "请选择活动对象 (名单、分群或已生成的名单)", "required")
    if "list" in value:
        kind = value.get("list")
        if kind not in LISTS:
            raise _bad("audience", f"名单类型无效: {str(kind)[:20]}", f"list one of {list(LISTS)}")
        start = str(value.get("start") or "")
        try:
            first = audience.list_bounds(kind, {"month": start[:7], "week": start})
            dt.date.fromisoformat(start)
        except (ValidationError, ValueError):
            raise _bad("audience", f"名单日期应为 YYYY-MM-DD: {start[:20]!r}", "start") from None
        return {"list": kind, "start": first.isoformat()}
    if "segment" in value:
        seg = segments.get(_positive_id(value["segment"], "segment"))
        return {"segment": seg.id}
    if "run" in value:
        run = lists.get_run(_positive_id(value["run"], "run"))
        return {"run": run.id}
    raise _bad("audience", "活动对象须为名单、分群或已生成的名单", "list | segment | run")


def _benefit(value: Any) -> dict[str, Any]:
    if value is None or value == {}:
        return {}
    if isinstance(value, dict) and "gift" in value and set(value) == {"gift", "gift_cost_fen"}:
        cost = value["gift_cost_fen"]  # what one gift costs the chain (tracking's cost)
        if isinstance(cost, bool) or not isinstance(cost, int) or not 0 <= cost <= GIFT_COST_MAX:
            raise _bad(
                "benefit",
                f"礼品成本须为0到{GIFT_COST_MAX // 100}元",
                f"gift_cost_fen: integer fen 0..{GIFT_COST_MAX}",
            )
        return _benefit({"gift": value["gift"]}) | {"gift_cost_fen": cost}
    if not isinstance(value, dict) or len(value) != 1:
        raise _bad("benefit", "权益须为一项: 券、积分或礼品", "one of coupon | points | gift")
    ((kind, arg),) = value.items()
    if kind == "coupon":
        row = CouponTemplate.get_or_none(CouponTemplate.id == str(arg)[:32])
        if row is None:
            raise _bad("benefit", f"券模板不存在: {str(arg)[:32]}", "unknown coupon template")
        if not row.active:
            raise _bad("benefit", f"券模板已停用: {row.id}", "inactive coupon template")
        return {"coupon": row.id}
    if kind == "points":
        if isinstance(arg, bool) or not isinstance(arg, int) or not 1 <= arg <= POINTS_MAX:
            raise _bad("benefit", f"赠送积分须为1到{POINTS_MAX}", f"points 1..{POINTS_MAX}")
        return {"points": arg}
    if kind == "gift":
        if not isinstance(arg, str) or not arg.strip() or len(arg.strip()) > GIFT_MAX:
            raise _bad("benefit", f"礼品说明须为1到{GIFT_MAX}字", f"gift text 1..{GIFT_MAX}")
        return {"gift": arg.strip()}
    raise _bad("benefit", f"未知的权益: {str(kind)[:20]}", "one of coupon | points | gift")


def _channels(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _bad("channels", "请选择至少一个渠道", "a non-empty list")
    out: list[str] = []
    for ch in value:
        if ch not in CHANNELS:
            raise _bad("channels", f"未知的渠道: {str(ch)[:20]}", f"each one of {list(CHANNELS)}")
        if ch not in out:
            out.append(ch)
    return out


def placeholders_in(text: str) -> list[str]:
    """The placeholders a message names (``{name}``...); a stray brace is an error."""
    try:
        parts = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(text)]
    except ValueError:
        raise _bad("text", "文案中的花括号不成对", "unbalanced braces") from None
    if any(spec or conv for f, spec, conv in parts if f is not None):
        raise _bad("text", "占位符只写名称, 如 {name}", "a placeholder is its name only")
    return [f for f, _, _ in parts if f is not None]


def _text(value: Any, channels: list[str], benefit: dict[str, Any]) -> str:
    text = value if isinstance(value, str) else ""
    if value is not None and not isinstance(value, str):
        raise _bad("text", "文案须为文字", "a string")
    text = text.strip()
    if any(ch in MESSAGE_CHANNELS for ch in channels) and not text:
        raise _bad("text", "短信或微信渠道须填写文案", "required with sms or wechat")
    if len(text) > TEXT_MAX:
        raise _bad("text", f"文案不超过{TEXT_MAX}字", f"at most {TEXT_MAX} characters")
    for field in placeholders_in(text):
        if field not in PLACEHOLDERS:
            known = "、".join(f"{{{k}}}" for k in PLACEHOLDERS)
            raise _bad(
                "text", f"未知的占位符 {{{field[:20]}}}, 可用: {known}", "unknown placeholder"
            )
        if field in ("coupon", "points") and field not in benefit:
            raise _bad(
                "text", f"占位符 {{{field}}} 需要对应的权益", f"{{{field}}} needs that benefit"
            )
    return text


def _send_at(value: Any, zone: ZoneInfo) -> dt.datetime:
    """Naive UTC: a datetime as given (naive UTC, or aware), or an ISO text in the chain's
    local time (or with its own offset)."""
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, str) and value.strip():
        try:
            when = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise _bad(
                "send_at", f"发送时间格式无效: {value[:25]!r}", "ISO date and time"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=zone)
    else:
        raise _bad("send_at", "请填写发送时间", "required")
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when.replace(microsecond=0)


def _int(value: Any, field: str, zh: str, low: int, high: int, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(field, f"{zh}须为{low}到{high}的整数", f"an integer {low}..{high}")
    return value


def check(data: Any, zone: ZoneInfo) -> dict[str, Any]:
    """A campaign's fields, checked (a ``ValidationError`` names the first bad one)."""
    if not isinstance(data, dict):
        raise ValidationError("请求须为 JSON 对象 (send a JSON object)", field="body")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise _bad(str(unknown[0])[:32], f"未知的字段: {str(unknown[0])[:32]}", "unknown field")
    channels = _channels(data.get("channels"))
    benefit = _benefit(data.get("benefit"))
    return {
        "name": _name(data.get("name")),
        "audience": _audience(data.get("audience")),
        "benefit": benefit,
        "channels": channels,
        "text": _text(data.get("text"), channels, benefit),
        "send_at": _send_at(data.get("send_at"), zone),
        "window_days": _int(data.get("window_days"), "window_days", "观察天数", 1, 90, 14),
        "control_pct": _int(data.get("control_pct"), "control_pct", "对照组比例", 0, 50, 0),
        "message_cost_fen": _int(
            data.get("message_cost_fen"), "message_cost_fen", "单条消息成本(分)", 0, COST_MAX, 0
        ),
    }


# ---- making, changing, finding ----------------------------------------------------------


def create(
    db: pw.Database, data: dict[str, Any], by: str, now: dt.datetime, zone: ZoneInfo | None = None
) -> Campaign:
    """A draft campaign (audited ``campaign.create``)."""
    by = audit.require_actor(by)
    fields = check(data, zone or ZoneInfo(DEFAULT_ZONE))
    with db.atomic():
        campaign = Campaign.create(**fields, status="draft", created_by=by, created_at=now)
        audit.record(db, by, "campaign.create", str(campaign.id), at=now, name=campaign.name)
    return campaign


def update(
    db: pw.Database,
    campaign_id: int,
    data: dict[str, Any],
    by: str,
    now: dt.datetime,
    zone: ZoneInfo | None = None,
) -> Campaign:
    """Change a draft: ``data`` holds the fields to change; the result is checked whole."""
    by = audit.require_actor(by)
    if not isinstance(data, dict):
        raise ValidationError("请求须为 JSON 对象 (send a JSON object)", field="body")
    with db.atomic():
        campaign = get(campaign_id)
        if campaign.status != "draft" or campaign.run_id is not None:
            raise Conflict(f"活动已发起, 不能修改 (campaign is {campaign.status})", field="status")
        current = {f: getattr(campaign, f) for f in FIELDS}
        fields = check({**current, **data}, zone or ZoneInfo(DEFAULT_ZONE))
        for name, value in fields.items():
            setattr(campaign, name, value)
        campaign.save()
        audit.record(db, by, "campaign.update", str(campaign.id), at=now, fields=sorted(data))
    return campaign


def get(campaign_id: int) -> Campaign:
    ok = isinstance(campaign_id, int) and 1 <= campaign_id <= ID_MAX
    campaign = Campaign.get_or_none(Campaign.id == campaign_id) if ok else None
    if campaign is None:
        raise NotFound(f"活动不存在: {campaign_id} (no such campaign)", field="campaign")
    return campaign


def all_campaigns() -> list[Campaign]:
    """Every campaign, the newest first."""
    return list(Campaign.select().order_by(Campaign.id.desc()))


# ---- launching --------------------------------------------------------------------------


def is_control(campaign_id: int, member_id: str, control_pct: int) -> bool:
    """The stable split: the same member of the same campaign always falls the same way."""
    digest = hashlib.sha256(f"{campaign_id}:{member_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < control_pct


def send_key(campaign_id: int, member_id: str, channel: str) -> str:
    """The idempotency key the gateway sees for one message (the same on every retry)."""
    return f"c{campaign_id}:{member_id}:{channel}"


def _freeze(
    db: pw.Database, campaign: Campaign, by: str, now: dt.datetime, today: dt.date
) -> ListRun:
    spec = campaign.audience
    if "list" in spec:
        run, _ = lists.produce(
            db, spec["list"], dt.date.fromisoformat(spec["start"]), now, by, today
        )
        return run
    if "segment" in spec:
        run, _ = lists.snapshot_segment(db, segments.get(spec["segment"]), now, by, today)
        return run
    return lists.get_run(int(spec["run"]))


def launch(
    db: pw.Database, campaign_id: int, by: str, now: dt.datetime, today: dt.date
) -> Campaign:
    """Freeze the audience, split off the control group, write the sends; status
    scheduled. A launched campaign is returned as it is (a second launch changes
    nothing); a launch cut short is finished by the next one."""
    by = audit.require_actor(by)
    campaign = get(campaign_id)
    if campaign.status == "cancelled":
        raise Conflict("活动已取消, 不能发起 (campaign is cancelled)", field="status")
    if campaign.status != "draft":
        return campaign
    if campaign.run_id is None:
        run = _freeze(db, campaign, by, now, today)
        Campaign.update(run_id=run.id).where(
            (Campaign.id == campaign.id) & Campaign.run_id.is_null()
        ).execute()
        campaign = get(campaign_id)
    run = lists.get_run(campaign.run_id)
    message_channels = [ch for ch in campaign.channels if ch in MESSAGE_CHANNELS]
    after, total = "", 0
    while True:
        page = lists.run_member_ids(run, after, PAGE)
        if not page:
            break
        _launch_page(db, campaign, page, message_channels, by, now, today)
        total += len(page)
        after = page[-1]
    with db.atomic():
        done = (
            Campaign.update(status="scheduled", recipients=total, launched_by=by, launched_at=now)
            .where((Campaign.id == campaign.id) & (Campaign.status == "draft"))
            .execute()
        )
        if done:
            treated = total - _count_control(campaign.id)
            audit.record(
                db, by, "campaign.launch", str(campaign.id), at=now, run=run.id,
                recipients=total, treated=treated,
            )  # fmt: skip
    return get(campaign_id)


def _count_control(campaign_id: int) -> int:
    R = CampaignRecipient
    return R.select().where((R.campaign == campaign_id) & R.control).count()


def _launch_page(
    db: pw.Database,
    campaign: Campaign,
    member_ids: list[str],
    message_channels: list[str],
    by: str,
    now: dt.datetime,
    today: dt.date,
) -> None:
    recipients = [
        {
            "campaign": campaign.id,
            "member_id": mid,
            "control": is_control(campaign.id, mid, campaign.control_pct),
        }
        for mid in member_ids
    ]
    treated = [r["member_id"] for r in recipients if not r["control"]]
    sends = [
        {
            "campaign": campaign.id,
            "member_id": mid,
            "channel": ch,
            "key": send_key(campaign.id, mid, ch),
            "status": "pending",
            "next_at": campaign.send_at,
            "updated_at": now,
        }
        for mid in treated
        for ch in message_channels
    ]
    with db.atomic():
        CampaignRecipient.insert_many(recipients).on_conflict_ignore().execute()
        if sends:
            CampaignSend.insert_many(sends).on_conflict_ignore().execute()
        elif campaign.benefit and treated:
            # a call-only campaign: no message to give it with, so it is given now
            changes = ChangeSet()
            give_benefits(db, campaign, treated, by, now, today, changes)
            flush_changes(db, changes, now)


# ---- the benefit ------------------------------------------------------------------------


def give_benefits(
    db: pw.Database,
    campaign: Campaign,
    member_ids: list[str],
    by: str,
    now: dt.datetime,
    today: dt.date,
    changes: ChangeSet,
) -> int:
    """Give the campaign's benefit to those of ``member_ids`` who are treated and have not
    had it; call inside the caller's transaction (``changes`` flushed by the caller).
    ``benefit_ref``: the coupon code, the points lot, "gift", or "held" when the member
    already holds the template's limit of coupons. Returns how many were given."""
    kind = next(iter(campaign.benefit), None)
    if kind is None or not member_ids:
        return 0
    R = CampaignRecipient
    due = [
        mid
        for (mid,) in R.select(R.member_id)
        .where(
            (R.campaign == campaign.id)
            & R.member_id.in_(member_ids)
            & ~R.control
            & R.benefit_ref.is_null()
        )
        .tuples()
    ]
    if not due:
        return 0
    by = f"campaign:{campaign.id}" if by == "scheduler" else by
    refs: dict[str, str] = {}
    if kind == "coupon":
        from hq.programme.coupons import issue_coupons

        for mid in due:
            codes = issue_coupons(
                db, campaign.benefit["coupon"], [mid], by=by, source="campaign",
                ref=f"campaign:{campaign.id}", now=now, changes=changes, today=today,
            )  # fmt: skip
            refs[mid] = codes[0] if codes else "held"
    elif kind == "points":
        from hq.programme.points import adjust_points

        for mid in due:
            given = adjust_points(
                db, mid, int(campaign.benefit["points"]), by=by,
                reason=f"活动赠送积分 campaign:{campaign.id}", today=today, now=now,
            )  # fmt: skip
            refs[mid] = str(given["lot_id"])[:64]
    else:
        refs = {mid: "gift" for mid in due}
    for mid, ref in refs.items():
        R.update(benefit_ref=ref, benefit_at=now).where(
            (R.campaign == campaign.id) & (R.member_id == mid)
        ).execute()
    return sum(1 for ref in refs.values() if ref != "held")


# ---- cancelling -------------------------------------------------------------------------


def cancel(db: pw.Database, campaign_id: int, by: str, now: dt.datetime) -> Campaign:
    """Stop a campaign: its pending sends become skipped (cancelled). Messages already
    with the gateway (``sending``) keep their answer. Cancelling twice changes nothing."""
    by = audit.require_actor(by)
    with db.atomic():
        campaign = get(campaign_id)
        if campaign.status == "cancelled":
            return campaign
        if campaign.status == "done":
            raise Conflict("活动已完成, 不能取消 (campaign is done)", field="status")
        S = CampaignSend
        skipped = (
            S.update(status="skipped", reason="cancelled", updated_at=now)
            .where((S.campaign == campaign.id) & (S.status == "pending"))
            .execute()
        )
        Campaign.update(status="cancelled", finished_at=now).where(
            Campaign.id == campaign.id
        ).execute()
        audit.record(db, by, "campaign.cancel", str(campaign.id), at=now, skipped=skipped)
    return get(campaign_id)


# ---- what a screen shows ----------------------------------------------------------------


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def audience_label(spec: dict[str, Any]) -> str:
    if "list" in spec:
        return lists.describe(spec["list"], dt.date.fromisoformat(spec["start"]))
    if "segment" in spec:
        seg = segments.Segment.get_or_none(segments.Segment.id == spec["segment"])
        return f"分群: {seg.name}" if seg is not None else f"分群 #{spec['segment']} (已删除)"
    run = ListRun.get_or_none(ListRun.id == spec.get("run"))
    if run is None or (run.kind not in LISTS and run.kind != "segment"):
        return f"名单 #{spec.get('run')}"
    return f"{lists.describe(run.kind, run.start)} · 已生成名单"


def benefit_label(benefit: dict[str, Any]) -> str:
    if "coupon" in benefit:
        row = CouponTemplate.get_or_none(CouponTemplate.id == benefit["coupon"])
        what = CouponRules.from_dict(row.data).describe() if row is not None else "?"
        return f"券 {benefit['coupon']} ({what})"
    if "points" in benefit:
        return f"赠送 {benefit['points']} 积分"
    if "gift" in benefit:
        return f"礼品: {benefit['gift']}"
    return "无"


def as_dict(c: Campaign, zone: ZoneInfo | None = None) -> dict[str, Any]:
    """A campaign as JSON, with the Chinese labels a screen shows; ``send_at`` is naive
    UTC, ``send_at_local`` the chain's local time."""
    zone = zone or ZoneInfo(DEFAULT_ZONE)
    local = c.send_at.replace(tzinfo=dt.UTC).astimezone(zone).replace(tzinfo=None)
    return {
        "id": c.id,
        "name": c.name,
        "audience": c.audience,
        "audience_label": audience_label(c.audience),
        "run_id": c.run_id,
        "benefit": c.benefit,
        "benefit_label": benefit_label(c.benefit),
        "channels": c.channels,
        "channel_labels": [CHANNELS[ch] for ch in c.channels],
        "text": c.text,
        "send_at": _iso(c.send_at),
        "send_at_local": local.isoformat(timespec="minutes"),
        "window_days": c.window_days,
        "control_pct": c.control_pct,
        "message_cost_fen": c.message_cost_fen,
        "status": c.status,
        "status_label": STATUSES.get(c.status, c.status),
        "recipients": c.recipients,
        "created_by": c.created_by,
        "created_at": _iso(c.created_at),
        "launched_by": c.launched_by,
        "launched_at": _iso(c.launched_at),
        "finished_at": _iso(c.finished_at),
    }


def progress(campaign_id: int) -> dict[str, Any]:
    """Counts of a campaign's sends by channel and status, skips by reason, and its
    treated and control groups."""
    campaign = get(campaign_id)
    S, R = CampaignSend, CampaignRecipient
    by_channel: dict[str, dict[str, int]] = {
        ch: {} for ch in campaign.channels if ch in MESSAGE_CHANNELS
    }
    skipped: dict[str, int] = {}
    rows = (
        S.select(S.channel, S.status, S.reason, pw.fn.COUNT(S.id))
        .where(S.campaign == campaign.id)
        .group_by(S.channel, S.status, S.reason)
        .tuples()
    )
    for channel, status, reason, n in rows:
        counts = by_channel.setdefault(channel, {})
        counts[status] = counts.get(status, 0) + n
        if status == "skipped":
            skipped[reason] = skipped.get(reason, 0) + n
    groups = dict(
        R.select(R.control, pw.fn.COUNT(R.member_id))
        .where(R.campaign == campaign.id)
        .group_by(R.control)
        .tuples()
    )
    return {
        "by_channel": by_channel,
        "skipped": skipped,
        "treated": int(groups.get(False, 0)),  # SQLite answers 0/1: equal keys
        "control": int(groups.get(True, 0)),
    }


# ---- consent, read in bulk --------------------------------------------------------------


def call_list(campaign_id: int, stores: list[str] | None = None) -> list[tuple[str, str, str]]:
    """(member_id, store, staff_code) of the treated members who consent to calls, by
    store and maintainer; ``stores`` limits it to those stores' members."""
    campaign = get(campaign_id)
    if "call" not in campaign.channels:
        return []
    R = CampaignRecipient
    out: list[tuple[str, str, str]] = []
    after = ""
    while True:
        query = (
            R.select(R.member_id, Member.registered_store, Member.staff_code)
            .join(Member, on=(Member.id == R.member_id))
            .where(
                (R.campaign == campaign.id)
                & ~R.control
                & (R.member_id > after)
                & (Member.status != "erased")
            )
            .order_by(R.member_id)
            .limit(PAGE)
        )
        if stores is not None:
            query = query.where(Member.registered_store.in_(stores))
        page = list(query.tuples())
        if not page:
            break
        answers = privacy.consent_answers([mid for mid, _, _ in page], "call")
        out += [
            (mid, store or "", staff or "")
            for mid, store, staff in page
            if answers.get(mid, (False, ""))[0]
        ]
        after = page[-1][0]
    return sorted(out, key=lambda row: (row[1], row[2], row[0]))
