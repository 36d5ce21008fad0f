"""Follow-up tasks (回访): the chain's rules, the job that makes the tasks, an outcome
recorded, and the calls done per staff member (docs/followups.md).

A task is made once per (member, kind, ref), where ``ref`` names what it follows: nothing
for a new member (one call ever), the sale for a service, the month for a regular or a
slipping regular, the last purchase day for a dormant member. At most one task per member
and kind is open at a time (``FollowUp.open_key``), so the job can run any number of times
a day and make nothing twice. Each task is assigned to the member's maintainer (HQ's
``Member.staff_code``) at the maintainer's store; a member with no maintainer (or one who
has left) gets a task of the store they registered at, for its manager to hand out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import peewee as pw

from core.errors import Conflict, NotFound, ValidationError
from core.followups import KINDS, check_outcome
from core.ids import uuid7
from core.profile import AT_RISK_TAGS
from core.protocol import Change
from hq import audit
from hq.changes import ChangeSet, flush_changes
from hq.marketing import settings as marketing_settings
from hq.models import (
    FollowUp,
    FollowUpOutcome,
    FollowUpRule,
    Member,
    Product,
    ReportMember,
    Sale,
    StaffMember,
    one_of,
)

COMPLAINT_TAG = AT_RISK_TAGS[0]  # 投诉: the chain's at-risk tag (core.profile)
LOOKBACK_DAYS = 14  # a task whose day passed while the job did not run is still made
CHUNK = 500  # members per statement

# ---- the rules ------------------------------------------------------------------------

RULE_KINDS = ("new_member", "service_sale", "regular", "slipping", "dormant")

# kind -> (days, params): ``days`` is days after the first purchase (new_member), after the
# service sale (service_sale), to call within (regular, slipping), or without a purchase
# (dormant). Seeds: 购买商品一周后回访; 保养后三天电话回访; 3个月未消费的会员电话回访.
RULE_DEFAULTS: dict[str, tuple[int, dict[str, Any]]] = {
    "new_member": (7, {}),
    # a product is a service when its catalogue data says ``"service": true`` or its
    # category is one of these
    "service_sale": (3, {"categories": []}),
    # a regular: at least min_visits purchases in the last window_days
    "regular": (7, {"min_visits": 4, "window_days": 90}),
    # slipping: visits or spend per day in the last recent_days below drop_percent of the
    # member's own rate in the baseline_days before, with at least min_visits there
    "slipping": (
        3,
        {"recent_days": 60, "baseline_days": 180, "min_visits": 3, "drop_percent": 50},
    ),
    "dormant": (90, {}),
}
PARAM_LIMITS: dict[str, tuple[int, int]] = {
    "min_visits": (1, 1000),
    "window_days": (7, 730),
    "recent_days": (7, 365),
    "baseline_days": (14, 1095),
    "drop_percent": (1, 99),
}
PARAM_LABELS = {
    "min_visits": "最少消费次数",
    "window_days": "统计天数",
    "recent_days": "近期天数",
    "baseline_days": "此前天数",
    "drop_percent": "下滑比例(%)",
    "categories": "服务品类",
}
# the dormant rule's days are marketing's 沉睡会员 threshold (hq/marketing/settings.py
# ``dormant_days``): one definition of dormant for the calls, the lists and the segments
DORMANT_SETTING = marketing_settings.BY_NAME["dormant_days"]
DAYS_LIMITS = {"dormant": (DORMANT_SETTING.low, DORMANT_SETTING.high)}
DEFAULT_DAYS_LIMITS = (0, 90)


@dataclass(frozen=True)
class Rule:
    kind: str
    enabled: bool
    days: int
    params: dict[str, Any]


def rules() -> dict[str, Rule]:
    """Every rule kind as the chain set it, or its defaults."""
    rows = {r.kind: r for r in FollowUpRule.select()}
    dormant_days = marketing_settings.current(FollowUpRule._meta.database)["dormant_days"]
    out = {}
    for kind in RULE_KINDS:
        days, params = RULE_DEFAULTS[kind]
        row = rows.get(kind)
        if row is not None:
            days, params = row.days, dict(params) | dict(row.params or {})
        if kind == "dormant":
            days = dormant_days
        out[kind] = Rule(kind, True if row is None else row.enabled, days, dict(params))
    return out


def _check_params(kind: str, params: Any) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise ValidationError("参数须为对象 (params must be an object)", field="params")
    known = RULE_DEFAULTS[kind][1]
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name not in known:
            raise ValidationError(
                f"{KINDS[kind]}没有参数 {name} (unknown parameter; one of {sorted(known)})",
                field=f"params.{name}",
            )
        if name == "categories":
            if not isinstance(value, list) or not all(
                isinstance(c, str) and 0 < len(c.strip()) <= 32 for c in value
            ):
                raise ValidationError(
                    "服务品类须为品类编号列表 (categories: a list of category codes)",
                    field="params.categories",
                )
            out[name] = sorted({c.strip() for c in value})
            continue
        lo, hi = PARAM_LIMITS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValidationError(
                f"{PARAM_LABELS[name]}须为 {lo} 到 {hi} 的整数 ({name}: a whole number {lo}..{hi})",
                field=f"params.{name}",
            )
        out[name] = value
    return out


def set_rule(
    db: pw.Database,
    kind: str,
    *,
    enabled: bool,
    days: int,
    params: dict[str, Any],
    by: str,
    now: dt.datetime,
) -> Rule:
    """Set one kind's rule (the job uses it from its next run); audited. The dormant
    rule's days are marketing's ``dormant_days`` threshold: setting them sets that (and
    changes the 沉睡会员 lists and segments too, as one definition should)."""
    if kind not in RULE_KINDS:
        raise ValidationError(
            f"没有这种回访规则: {kind} (kind: one of {', '.join(RULE_KINDS)})", field="kind"
        )
    lo, hi = DAYS_LIMITS.get(kind, DEFAULT_DAYS_LIMITS)
    if isinstance(days, bool) or not isinstance(days, int) or not lo <= days <= hi:
        raise ValidationError(
            f"天数须为 {lo} 到 {hi} 的整数 (days must be a whole number {lo}..{hi})", field="days"
        )
    checked = _check_params(kind, params)
    with db.atomic():
        if kind == "dormant" and marketing_settings.current(db)["dormant_days"] != days:
            marketing_settings.update(db, {"dormant_days": days}, by, now)
            audit.record(db, by, "marketing.settings", "thresholds", dormant_days=days)
        FollowUpRule.insert(
            kind=kind,
            enabled=bool(enabled),
            days=days,
            params=checked,
            updated_at=now,
            updated_by=by,
        ).on_conflict(
            conflict_target=[FollowUpRule.kind],
            update={
                FollowUpRule.enabled: bool(enabled),
                FollowUpRule.days: days,
                FollowUpRule.params: checked,
                FollowUpRule.updated_at: now,
                FollowUpRule.updated_by: by,
            },
        ).execute()
        audit.record(
            db, by, "followups.rule", kind, at=now, enabled=bool(enabled), days=days, params=checked
        )
    return rules()[kind]


# ---- a task as it goes down -------------------------------------------------------------


def followup_state(task: FollowUp) -> dict[str, Any]:
    """The change entity ``followup``: a store keeps the open tasks whose ``store`` is its
    own and drops any other state (docs/protocol.md)."""
    return {
        "followup_id": task.id,
        "member_id": task.member_id,
        "kind": task.kind,
        "kind_label": KINDS.get(task.kind, task.kind),
        "store": task.store,
        "staff_code": task.staff_code,
        "reason": task.reason,
        "due_on": _iso(task.due_on),
        "status": task.status,
    }


def _iso(day: Any) -> str:
    return day.isoformat() if isinstance(day, dt.date) else str(day)


def snapshot_records() -> Iterable[tuple[str, dict[str, Any]]]:
    """The open tasks, for a store's snapshot (hq/changes.py)."""
    for task in FollowUp.select().where(FollowUp.status == "open").order_by(FollowUp.id):
        yield task.id, followup_state(task)


# ---- making the tasks -------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    member_id: str
    kind: str
    ref: str
    due_on: dt.date
    reason: str


def _day(text: str) -> dt.date:
    return dt.date.fromisoformat(text[:10])


def _yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


_SALE_DAY = pw.fn.SUBSTR(Sale.occurred_at, 1, 10)  # the till's business day


def _sales_since(day: dt.date) -> pw.Expression:
    """Member sales on or after the business ``day``: the UTC index bounds the scan (a day
    early: a till's offset), the till's own day decides."""
    since_utc = dt.datetime.combine(day - dt.timedelta(days=1), dt.time())
    return (
        Sale.member_id.is_null(False)
        & (Sale.occurred_utc >= since_utc)
        & (_SALE_DAY >= day.isoformat())
    )


def new_member_candidates(rule: Rule, today: dt.date) -> list[Candidate]:
    last = today - dt.timedelta(days=rule.days)
    rows = ReportMember.select(ReportMember.member_id, ReportMember.first_day).where(
        (ReportMember.first_day >= last - dt.timedelta(days=LOOKBACK_DAYS))
        & (ReportMember.first_day <= last)
        & (ReportMember.merged == False)  # noqa: E712
    )
    return [
        Candidate(
            r.member_id,
            "new_member",
            "",
            r.first_day + dt.timedelta(days=rule.days),
            f"首次消费 {r.first_day.isoformat()} 后 {rule.days} 天回访: 询问商品满意度与建议,"
            " 告知会员权益",
        )
        for r in rows
    ]


def service_sale_candidates(rule: Rule, today: dt.date) -> list[Candidate]:
    last = today - dt.timedelta(days=rule.days)
    first = last - dt.timedelta(days=LOOKBACK_DAYS)
    categories = set(rule.params.get("categories") or [])
    sales = list(
        Sale.select(Sale.sale_id, Sale.member_id, Sale.occurred_at, Sale.body, Sale.line_goods)
        .where(_sales_since(first) & (_SALE_DAY <= last.isoformat()))
        .order_by(Sale.occurred_utc, Sale.sale_id)
    )
    skus = {
        str(line.get("sku"))
        for s in sales
        for line in (s.body or {}).get("lines") or []
        if isinstance(line, dict)
    }
    services: dict[str, str] = {}
    for sku_chunk in _chunks(sorted(skus)):
        for p in Product.select().where(one_of(Product.sku, sku_chunk)):
            data = p.data or {}
            if data.get("service") is True or (data.get("category") or "") in categories:
                services[p.sku] = p.name
    out = []
    for s in sales:
        names = [
            services[str(line.get("sku"))]
            for line in (s.body or {}).get("lines") or []
            if isinstance(line, dict) and str(line.get("sku")) in services
        ]
        if not names:
            continue
        day = _day(s.occurred_at)
        out.append(
            Candidate(
                s.member_id,
                "service_sale",
                s.sale_id,
                day + dt.timedelta(days=rule.days),
                f"{day.isoformat()} 购买服务「{'、'.join(names[:3])}」后 {rule.days} 天回访:"
                " 服务和质量是否满意",
            )
        )
    return out


def regular_candidates(rule: Rule, today: dt.date) -> list[Candidate]:
    window = rule.params["window_days"]
    visits = pw.fn.COUNT(Sale.sale_id)
    rows = (
        Sale.select(Sale.member_id, visits.alias("n"))
        .where(_sales_since(today - dt.timedelta(days=window - 1)))
        .group_by(Sale.member_id)
        .having(visits >= rule.params["min_visits"])
        .tuples()
    )
    month = today.strftime("%Y-%m")
    return [
        Candidate(
            member_id,
            "regular",
            month,
            today + dt.timedelta(days=rule.days),
            f"常客月度回访: 近 {window} 天消费 {n} 次; 询问服务、环境、价格的意见和建议",
        )
        for member_id, n in rows
    ]


def slipping_candidates(rule: Rule, today: dt.date) -> list[Candidate]:
    """Members whose visits or spend per day in the recent window fell below
    ``drop_percent`` of their own rate in the baseline window before it (integers only:
    recent * baseline_days * 100 < earlier * recent_days * drop_percent)."""
    p = rule.params
    recent_start = today - dt.timedelta(days=p["recent_days"] - 1)
    base_start = recent_start - dt.timedelta(days=p["baseline_days"])
    is_recent = _SALE_DAY >= recent_start.isoformat()
    rows = (
        Sale.select(
            Sale.member_id,
            pw.fn.SUM(pw.Case(None, [(is_recent, 1)], 0)),
            pw.fn.SUM(pw.Case(None, [(is_recent, 0)], 1)),
            pw.fn.SUM(pw.Case(None, [(is_recent, Sale.total)], 0)),
            pw.fn.SUM(pw.Case(None, [(is_recent, 0)], Sale.total)),
        )
        .where(_sales_since(base_start))
        .group_by(Sale.member_id)
        .tuples()
    )
    month = today.strftime("%Y-%m")
    out = []
    for member_id, recent_n, base_n, recent_fen, base_fen in rows:
        recent_n, base_n = int(recent_n or 0), int(base_n or 0)
        recent_fen, base_fen = int(recent_fen or 0), int(base_fen or 0)
        if base_n < p["min_visits"]:
            continue
        scale_recent = p["baseline_days"] * 100
        scale_base = p["recent_days"] * p["drop_percent"]
        fewer = recent_n * scale_recent < base_n * scale_base
        less = base_fen > 0 and recent_fen * scale_recent < base_fen * scale_base
        if not (fewer or less):
            continue
        out.append(
            Candidate(
                member_id,
                "slipping",
                month,
                today + dt.timedelta(days=rule.days),
                f"常客消费下滑: 近 {p['recent_days']} 天 {recent_n} 次 {_yuan(recent_fen)},"
                f" 此前 {p['baseline_days']} 天 {base_n} 次 {_yuan(base_fen)}; 询问原因",
            )
        )
    return out


def dormant_candidates(rule: Rule, today: dt.date) -> list[Candidate]:
    last = today - dt.timedelta(days=rule.days)
    first = last - dt.timedelta(days=LOOKBACK_DAYS)
    latest = pw.fn.MAX(_SALE_DAY)
    rows = (
        Sale.select(Sale.member_id, latest)
        .where(Sale.member_id.is_null(False))
        .group_by(Sale.member_id)
        .having((latest >= first.isoformat()) & (latest <= last.isoformat()))
        .tuples()
    )
    return [
        Candidate(
            member_id,
            "dormant",
            day,
            _day(day) + dt.timedelta(days=rule.days),
            f"{rule.days} 天未消费 (最后一次 {day}): 询问原因 (质量、服务、搬家、忙), 邀请回店",
        )
        for member_id, day in rows
    ]


CANDIDATES = {
    "new_member": new_member_candidates,
    "service_sale": service_sale_candidates,
    "regular": regular_candidates,
    "slipping": slipping_candidates,
    "dormant": dormant_candidates,
}


def _chunks(values: list[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _assignees(member_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """member id -> (store, maintainer code or None) for active members with a store."""
    members = list(
        Member.select(Member.id, Member.staff_code, Member.registered_store).where(
            one_of(Member.id, member_ids) & (Member.status == "active")
        )
    )
    codes = sorted({m.staff_code for m in members if m.staff_code})
    staff = (
        {
            s.code: s
            for s in StaffMember.select().where(one_of(StaffMember.code, codes))
            if s.status != "closed"
        }
        if codes
        else {}
    )
    out: dict[str, tuple[str, str | None]] = {}
    for m in members:
        keeper = staff.get(m.staff_code or "")
        if keeper is not None:
            out[m.id] = (keeper.store, keeper.code)
        elif m.registered_store:
            out[m.id] = (m.registered_store, None)
    return out


def _add_tasks(
    db: pw.Database, candidates: list[Candidate], now: dt.datetime, changes: ChangeSet
) -> int:
    """Insert, for each member without an open task of the kind, the earliest due task not
    made before (by member, kind, ref); returns how many were made."""
    made = 0
    by_member: dict[str, list[Candidate]] = {}
    for c in sorted(candidates, key=lambda c: (c.due_on, c.ref)):
        by_member.setdefault(c.member_id, []).append(c)
    for ids in _chunks(sorted(by_member)):
        assignees = _assignees(ids)
        taken = set(
            FollowUp.select(FollowUp.member_id, FollowUp.kind, FollowUp.ref)
            .where(one_of(FollowUp.member_id, ids))
            .tuples()
        )
        busy = set(
            FollowUp.select(FollowUp.member_id, FollowUp.kind)
            .where(one_of(FollowUp.member_id, ids) & (FollowUp.status == "open"))
            .tuples()
        )
        rows = []
        for member_id in ids:
            where = assignees.get(member_id)
            for c in by_member[member_id]:
                if where is None or (member_id, c.kind) in busy:
                    break
                if (member_id, c.kind, c.ref) in taken:
                    continue
                busy.add((member_id, c.kind))
                rows.append(
                    {
                        "id": uuid7(),
                        "member_id": member_id,
                        "kind": c.kind,
                        "ref": c.ref,
                        "store": where[0],
                        "staff_code": where[1],
                        "reason": c.reason,
                        "due_on": c.due_on,
                        "status": "open",
                        "open_key": f"{member_id}:{c.kind}",
                        "created_at": now,
                    }
                )
        if not rows:
            continue
        FollowUp.insert_many(rows).on_conflict_ignore().execute()
        for task in FollowUp.select().where(one_of(FollowUp.id, [r["id"] for r in rows])):
            changes.add("followup", task.id, followup_state(task))
            made += 1
    return made


def make_tasks(
    db: pw.Database, today: dt.date, now: dt.datetime, sent: list[Change] | None = None
) -> dict[str, int]:
    """Run every enabled rule for the business day ``today``: the tasks made per kind, and
    the open tasks overdue (due before today). Idempotent: a second run makes nothing.
    The change records written are appended to ``sent``."""
    counts: dict[str, int] = {}
    for kind, rule in rules().items():
        if not rule.enabled:
            continue
        candidates = CANDIDATES[kind](rule, today)
        with db.atomic():
            changes = ChangeSet()
            counts[kind] = _add_tasks(db, candidates, now, changes)
            written = flush_changes(db, changes, now)
        if sent is not None:
            sent.extend(written)
    counts["overdue"] = overdue_count(today)
    return counts


# at most this many change records are pushed live after a run; beyond it only the last
# one is, and each store, seeing a gap after its cursor, pages through the rest
PUSH_ALL_UP_TO = 1000


def make_tasks_job(ctx: Any) -> dict[str, int]:
    """The scheduler's ``followups`` job (hq/scheduler.py): the tasks for the chain's
    business day, then their changes pushed to the stores (best effort: a store that
    misses them gets them from the change log)."""
    from hq.cli import push_changes

    sent: list[Change] = []
    counts = make_tasks(ctx.db, ctx.today(), ctx.clock(), sent)
    if sent:
        push_changes(ctx.config, sent if len(sent) <= PUSH_ALL_UP_TO else sent[-1:])
    return counts


def overdue_count(today: dt.date, stores: Iterable[str] | None = None) -> int:
    query = FollowUp.select().where((FollowUp.status == "open") & (FollowUp.due_on < today))
    if stores is not None:
        query = query.where(one_of(FollowUp.store, sorted(stores)))
    return query.count()


# ---- an outcome -----------------------------------------------------------------------


def _store_manager(store: str) -> str | None:
    row = (
        StaffMember.select(StaffMember.code)
        .where(
            (StaffMember.store == store)
            & (StaffMember.role == "manager")
            & (StaffMember.status == "active")
        )
        .order_by(StaffMember.code)
        .first()
    )
    return row.code if row else None


def _tag_complaint(member: Member, at: dt.datetime, store: str | None, now: dt.datetime) -> bool:
    """Add the chain's complaint tag (投诉) to the member's tags, as a profile edit at ``at``
    (hq/programme/upkeep.py: a till's older edit of the tags does not take it away)."""
    from hq.programme.upkeep import ERASED, apply_profile_changes, latest_rules

    tags = list(member.tags or [])
    if member.status == ERASED or COMPLAINT_TAG in tags:
        return False
    applied = apply_profile_changes(
        member, {"tags": [*tags, COMPLAINT_TAG]}, at, store, latest_rules(), now
    )
    return bool(applied)


def close_with_outcome(
    db: pw.Database,
    task: FollowUp,
    fields: dict[str, Any],
    *,
    source: str,
    staff_code: str | None,
    done_by: str,
    recorded_at: str,
    member: Member | None,
    now: dt.datetime,
    changes: ChangeSet,
) -> FollowUpOutcome:
    """Store the outcome and close the task (call inside a transaction). A complaint tags
    the member 投诉 and makes a ``complaint`` task for the store manager of the task's
    store (due on the day of the call)."""
    outcome = FollowUpOutcome.create(
        followup_id=task.id,
        member_id=task.member_id,
        store=task.store,
        staff_code=staff_code,
        recorded_at=recorded_at,
        source=source,
        ingested_at=now,
        **fields,
    )
    if task.status == "open":
        FollowUp.update(
            status="done",
            open_key=None,
            done_at=now,
            done_by=done_by,
            outcome_id=outcome.outcome_id,
        ).where(FollowUp.id == task.id).execute()
        task = FollowUp.get_by_id(task.id)
        changes.add("followup", task.id, followup_state(task))
    if fields["complaint"]:
        day = _day(recorded_at)
        if member is not None and _tag_complaint(member, now, None, now):
            changes.member(member.id)
        complaint = FollowUp(
            id=uuid7(),
            member_id=task.member_id,
            kind="complaint",
            ref=outcome.outcome_id,
            store=task.store,
            staff_code=_store_manager(task.store),
            reason=f"会员投诉 ({KINDS.get(task.kind, task.kind)}, {day.isoformat()}): "
            f"{fields['complaint']}",
            due_on=day,
            status="open",
            open_key=None,  # complaints are never folded together
            created_at=now,
        )
        complaint.save(force_insert=True)
        changes.add("followup", complaint.id, followup_state(complaint))
    return outcome


def apply_followup_outcome(ctx: Any, body: dict[str, Any]) -> None:
    """An item ``followup_outcome`` from a till: HQ's task of that store closes with it.
    An unknown task, another store's or another member's is refused (dead-lettered)."""
    if FollowUpOutcome.get_or_none(FollowUpOutcome.outcome_id == body["outcome_id"].lower()):
        return  # recorded before (the same outcome sent again under another item id)
    task = FollowUp.get_or_none(FollowUp.id == body["followup_id"])
    if task is None:
        raise NotFound(
            f"回访任务不存在 {body['followup_id']} (no such follow-up)", field="followup_id"
        )
    if task.store != ctx.item.store:
        raise ValidationError(
            f"回访任务属于门店 {task.store} (follow-up of another store)", field="followup_id"
        )
    if task.member_id != body["member_id"]:
        raise ValidationError("回访任务的会员不符 (member does not match)", field="member_id")
    fields = check_outcome(body)
    ctx.book.flush()  # the member row as this batch left it (tags are written at once)
    try:
        member = ctx.book.member(task.member_id)
    except NotFound:
        member = None
    staff = body.get("staff_code")
    close_with_outcome(
        ctx.db,
        task,
        fields,
        source="till",
        staff_code=staff,
        done_by=staff,
        recorded_at=body["recorded_at"],
        member=member,
        now=ctx.now,
        changes=ctx.changes,
    )


def record_at_hq(
    db: pw.Database,
    followup_id: str,
    data: dict[str, Any],
    by: str,
    now: dt.datetime,
    recorded_at: str | None = None,
) -> tuple[FollowUpOutcome, list[Change]]:
    """An outcome recorded in the console by HQ user ``by`` (``recorded_at``: the chain's
    local time as ISO text; default ``now`` in UTC); audited. The same ``outcome_id`` again
    returns the outcome recorded. Returns the outcome and the change records written."""
    fields = check_outcome(data)
    with db.atomic():
        same = FollowUpOutcome.get_or_none(FollowUpOutcome.outcome_id == fields["outcome_id"])
        if same is not None:
            return same, []
        task = FollowUp.get_or_none(FollowUp.id == followup_id)
        if task is None:
            raise NotFound(f"回访任务不存在 {followup_id} (no such follow-up)", field="followup_id")
        if task.status != "open":
            raise Conflict("这条回访已记录结果 (already has an outcome)", field="followup_id")
        changes = ChangeSet()
        outcome = close_with_outcome(
            db,
            task,
            fields,
            source="console",
            staff_code=None,
            done_by=by,
            recorded_at=recorded_at or now.replace(tzinfo=dt.UTC).isoformat(timespec="seconds"),
            member=Member.get_or_none(Member.id == task.member_id),
            now=now,
            changes=changes,
        )
        audit.record(
            db,
            by,
            "followups.outcome",
            task.member_id,
            store=task.store,
            at=now,
            followup=task.id,
            reached=fields["reached"],
            complaint=bool(fields["complaint"]),
        )
        written = flush_changes(db, changes, now)
    return outcome, written


def merge_followups(loser: str, survivor: str, now: dt.datetime, changes: ChangeSet) -> None:
    """A merge (hq/members.py ``merge_members``): the merged member's calls become the
    survivor's. What their calls said moves with them. A task the survivor already has
    (the same kind and ref, or an open one of the same kind) is closed (done by
    ``merged``) rather than made twice; the others move, and the stores hear of every
    open task that moved or closed."""
    FollowUpOutcome.update(member_id=survivor).where(FollowUpOutcome.member_id == loser).execute()
    theirs = list(FollowUp.select().where(FollowUp.member_id == survivor))
    made = {(t.kind, t.ref) for t in theirs}
    open_kinds = {t.kind for t in theirs if t.open_key is not None}
    for task in FollowUp.select().where(FollowUp.member_id == loser).order_by(FollowUp.id):
        twice = (task.kind, task.ref) in made or (
            task.open_key is not None and task.kind in open_kinds
        )
        if twice:
            if task.status == "open":
                task.status, task.open_key, task.done_at, task.done_by = "done", None, now, "merged"
                task.save()
                changes.add("followup", task.id, followup_state(task))
            continue  # a done one stays the merged member's: the call was made to them
        was_open = task.status == "open"
        task.member_id = survivor
        if task.open_key is not None:
            task.open_key = f"{survivor}:{task.kind}"
            open_kinds.add(task.kind)
        made.add((task.kind, task.ref))
        task.save()
        if was_open:
            changes.add("followup", task.id, followup_state(task))


def erase_followups(member_ids: list[str], now: dt.datetime, changes: ChangeSet) -> None:
    """A member's personal data erased (hq/privacy.py ``erase_member``): what their calls
    said is blanked, and their open tasks are closed (done by ``erased``) and dropped at
    the stores."""
    FollowUpOutcome.update(said="", complaint="", request="").where(
        one_of(FollowUpOutcome.member_id, member_ids)
    ).execute()
    FollowUp.update(reason="").where(one_of(FollowUp.member_id, member_ids)).execute()
    still_open = list(
        FollowUp.select().where(
            one_of(FollowUp.member_id, member_ids) & (FollowUp.status == "open")
        )
    )
    FollowUp.update(status="done", open_key=None, done_at=now, done_by="erased").where(
        one_of(FollowUp.id, [t.id for t in still_open] or [""])
    ).execute()
    for task in still_open:
        changes.add("followup", task.id, followup_state(FollowUp.get_by_id(task.id)))


# ---- lists and figures ----------------------------------------------------------------


def done_by_staff(
    store: str | None = None, first: dt.date | None = None, last: dt.date | None = None
) -> dict[str, int]:
    """Staff contribution: follow-up calls whose outcome a staff member recorded at a
    till, per staff code, on the till's days ``first``..``last`` (both inclusive)."""
    day = pw.fn.SUBSTR(FollowUpOutcome.recorded_at, 1, 10)
    where = FollowUpOutcome.staff_code.is_null(False)
    if store:
        where &= FollowUpOutcome.store == store
    if first:
        where &= day >= first.isoformat()
    if last:
        where &= day <= last.isoformat()
    return dict(
        FollowUpOutcome.select(FollowUpOutcome.staff_code, pw.fn.COUNT(FollowUpOutcome.outcome_id))
        .where(where)
        .group_by(FollowUpOutcome.staff_code)
        .tuples()
    )
