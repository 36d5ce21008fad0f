# ruff: noqa: S608 - the SQL text holds table names and placeholders only; every value is bound
"""What a campaign did (docs/campaigns.md, section "Tracking", has every figure).

``results(db, campaign_id, now)`` counts, in a handful of set-based queries (no loop over
members in Python, so a campaign of 100,000+ recipients costs a few index scans):

- **Who.** A recipient is resolved to the member they are now: a member merged away
  after launch counts as the survivor (``Member.merged_into``; a merge moves the sales,
  returns and coupons to the survivor, so the survivor's sales in the window are the
  person's). Two recipients merged into one count once, treated if either was.
  ``treated`` (intent to treat): the treated people; ``reached``: those of them with at
  least one message sent (``CampaignSend.sent_at`` set: the gateway took it), or every
  treated one when the campaign has no message channel (a call list only);
  ``control``: the people held out (no message, no benefit).
- **Came back.** A person came back when they have a sale whose ``occurred_utc`` is in
  the window ``[send_at, send_at + window_days)``, cut at ``now`` while the window is
  open. ``sales_fen``: the sum of those sales' totals less every refund HQ recorded by
  ``now`` against them (``Return.sale_id``; a sale wholly returned still counts as a
  visit). Each is given for ``treated`` (the reached ones), ``treated_all`` (intent to
  treat) and ``control``.
- **Compared.** ``came_back_rate`` = came back / people, per group; ``lift`` = treated
  rate − control rate (``lift_all`` with intent to treat); ``incremental_sales_fen`` =
  (treated sales per person − control sales per person) × treated people, rounded half
  away from zero in integers (``incremental_sales_fen_all`` likewise); None without a
  control group.
- **Cost.** ``cost_fen``: ``messages`` = messages sent × ``message_cost_fen``;
  ``coupons`` = the face value of the campaign's coupons redeemed (``status`` used: a
  return that restores a coupon un-redeems it); ``points`` = points given (the points
  benefit × recipients given it) worth ``core.points.fen_for_points`` under the current
  rules; ``gifts`` = gifts given × the campaign's ``gift_cost_fen`` (0 when the form
  left the cost empty). ``net_fen`` = incremental sales − cost;
  ``roi`` = incremental sales / cost.
- **KPIs.** ``activation_rate`` (audience a new-member list) and ``wake_rate`` (audience
  the dormant list): the came-back rate per group, i.e. hq/reports/kpis.py's 激活 and
  唤醒 counted over the campaign's window instead of the KPI's own period.

Money is ``int`` fen; ratios are ``fractions.Fraction`` (``as_json`` gives floats for
display), None when the denominator is zero.
"""

from __future__ import annotations

import datetime as dt
from fractions import Fraction
from typing import Any

import peewee as pw

from core.errors import NotFound
from core.points import fen_for_points
from hq.marketing.audience import WORK_MEM
from hq.marketing.campaigns import MESSAGE_CHANNELS
from hq.models import (
    Campaign,
    CampaignRecipient,
    CampaignSend,
    Coupon,
    ListRun,
    Member,
    Return,
    Sale,
)
from hq.reports.kpis import Sql, ratio_of
from hq.reports.kpis import as_json as _kpi_json

NEW_MEMBER_LISTS = ("new_members", "weekly_new")  # whose rate is activation (激活率)
DORMANT_LISTS = ("dormant",)  # whose rate is wake-up (唤醒率)
GROUPS = ("treated", "treated_all", "control")


def _t(model: type[pw.Model]) -> str:
    return f'"{model._meta.table_name}"'


def round_half_away(num: int, den: int) -> int:
    """``num / den`` rounded to the nearest integer, halves away from zero (integers only)."""
    if den == 0:
        raise ZeroDivisionError("round_half_away: zero denominator")
    if den < 0:
        num, den = -num, -den
    q, r = divmod(abs(num), den)
    if 2 * r >= den:
        q += 1
    return q if num >= 0 else -q


def window(campaign: Campaign, now: dt.datetime) -> dict[str, Any]:
    """The campaign's window ``[from, to)`` in naive UTC, and whether it is over at ``now``."""
    start = campaign.send_at
    end = start + dt.timedelta(days=int(campaign.window_days))
    return {"from": start, "to": end, "closed": now >= end}


def _people_cte(q: Sql, campaign: Campaign, stores: list[str] | None = None) -> str:
    """``people(person, ctl, got)``: the campaign's recipients as the members they are now,
    ``ctl`` 1 for the control group, ``got`` 1 when reached (see the module docstring);
    ``stores``: only the recipients registered at those stores (a store manager's)."""
    r, m, s = _t(CampaignRecipient), _t(Member), _t(CampaignSend)
    channels = set(campaign.channels or []) & set(MESSAGE_CHANNELS)
    if channels:
        # this campaign's sends only (its index), once per member
        sent = (
            f" LEFT JOIN (SELECT member_id FROM {s} WHERE campaign = {q.p(campaign.id)}"
            " AND sent_at IS NOT NULL GROUP BY member_id) x ON x.member_id = r.member_id"
        )
        got = "CASE WHEN x.member_id IS NULL THEN 0 ELSE 1 END"
    else:
        sent, got = "", "1"  # nothing to send: every treated member is on the call list
    return (
        "WITH rcp AS (SELECT COALESCE(m.merged_into, r.member_id) AS person,"
        f" CASE WHEN r.control THEN 1 ELSE 0 END AS ctl, {got} AS got"
        f" FROM {r} r LEFT JOIN {m} m ON m.id = r.member_id{sent}"
        f" WHERE r.campaign = {q.p(campaign.id)} AND {q.one_of('m.registered_store', stores)}),"
        # treated wins when one person was in both groups (two records merged after launch)
        " people AS (SELECT person, MIN(ctl) AS ctl,"
        " MAX(CASE WHEN ctl = 0 THEN got ELSE 0 END) AS got FROM rcp GROUP BY person)"
    )


def _theirs(q: Sql, column: str, stores: list[str] | None) -> str:
    """`` AND column IN (the members registered at stores)``; nothing for the chain."""
    if stores is None:
        return ""
    return f" AND {column} IN (SELECT id FROM {_t(Member)} WHERE {q.one_of('registered_store', stores)})"


PEOPLE, TOTAL, STORE = 0, 1, 2  # the row kinds of ``_outcome``'s answer


def _outcome(
    db: pw.Database,
    campaign: Campaign,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
    stores: list[str] | None,
) -> list[tuple[Any, ...]]:
    """One query, the window's sales read once: rows (kind, ctl, got, store, n, fen) with
    kind ``PEOPLE`` (n people per group), ``TOTAL`` (n came back, fen net sales per group)
    and ``STORE`` (the same per store of the sale)."""
    q = Sql(db)
    sale, ret = _t(Sale), _t(Return)
    text = _people_cte(q, campaign, stores)
    text += (
        ", ps AS (SELECT p.ctl, p.got, p.person, s.store,"
        f" SUM(s.total - COALESCE((SELECT SUM(x.refund_total) FROM {ret} x"
        f" WHERE x.sale_id = s.sale_id AND x.ingested_at <= {q.p(now)}), 0)) AS fen"
        f" FROM people p JOIN {sale} s ON s.member_id = p.person"
        f" WHERE s.occurred_utc >= {q.p(start)} AND s.occurred_utc < {q.p(end)}"
        " GROUP BY p.ctl, p.got, p.person, s.store)"
        f" SELECT {PEOPLE}, ctl, got, NULL, COUNT(*), 0 FROM people GROUP BY ctl, got"
        f" UNION ALL SELECT {TOTAL}, ctl, got, NULL, COUNT(DISTINCT person), SUM(fen)"
        " FROM ps GROUP BY ctl, got"
        f" UNION ALL SELECT {STORE}, ctl, got, store, COUNT(*), SUM(fen)"
        " FROM ps GROUP BY ctl, got, store"
    )
    with db.atomic():
        if q.pg:  # as the audience queries: room to sort and hash in memory, no JIT
            db.execute_sql(f"SET LOCAL work_mem = '{WORK_MEM}'")
            db.execute_sql("SET LOCAL jit = off")  # compiling costs a second, gains none
        return q.run(text)


def _group_of(ctl: Any, got: Any) -> str:
    """``control`` | ``treated`` (reached) | ``unreached`` (treated, no message sent)."""
    if int(ctl):
        return "control"
    return "treated" if int(got) else "unreached"


def _by_groups(counts: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """(came back, sales) per reported group from the disjoint ones: ``treated_all`` is
    the reached and the unreached together (a person is in exactly one of them)."""
    zero = (0, 0)
    t, u, c = (counts.get(k, zero) for k in ("treated", "unreached", "control"))
    return {"treated": t, "treated_all": (t[0] + u[0], t[1] + u[1]), "control": c}


def _incremental(t_sales: int, t_n: int, c_sales: int, c_n: int) -> int | None:
    """(t_sales / t_n − c_sales / c_n) × t_n = (t_sales × c_n − c_sales × t_n) / c_n."""
    if not c_n or not t_n:
        return None
    return round_half_away(t_sales * c_n - c_sales * t_n, c_n)


def _audience_kind(campaign: Campaign) -> str | None:
    if campaign.run_id is not None:
        run = ListRun.get_or_none(ListRun.id == campaign.run_id)
        if run is not None:
            return str(run.kind)
    audience = campaign.audience or {}
    return str(audience["list"]) if isinstance(audience, dict) and "list" in audience else None


def results(
    db: pw.Database, campaign_id: int, now: dt.datetime, stores: list[str] | None = None
) -> dict[str, Any]:
    """What campaign ``campaign_id`` did as of ``now`` (naive UTC); the module docstring
    and docs/campaigns.md ("Tracking") define each figure. ``stores`` (a store or area
    manager's): every figure over the recipients registered at those stores only (their
    messages, coupons, points and sales, wherever they bought); None: the whole chain."""
    campaign = Campaign.get_or_none(Campaign.id == campaign_id)
    if campaign is None:
        raise NotFound(f"活动不存在: {campaign_id} (unknown campaign)", field="campaign_id")
    win = window(campaign, now)
    cut = min(win["to"], max(now, win["from"]))  # sales after ``now`` are not in yet

    # -- people, came back and sales per group, in all and per store of the sale
    people: dict[str, int] = {}
    totals: dict[str, tuple[int, int]] = {}
    per_store: dict[str, dict[str, tuple[int, int]]] = {}
    for kind, ctl, got, store, n, fen in _outcome(db, campaign, win["from"], cut, now, stores):
        group = _group_of(ctl, got)
        if kind == PEOPLE:
            people[group] = int(n)
        elif kind == TOTAL:
            totals[group] = (int(n), int(fen))
        else:
            per_store.setdefault(str(store), {})[group] = (int(n), int(fen))
    n_treated, n_unreached, n_control = (
        people.get(k, 0) for k in ("treated", "unreached", "control")
    )
    heads = {"treated": n_treated, "treated_all": n_treated + n_unreached, "control": n_control}
    groups = _by_groups(totals)
    by_store = {
        store: {g: {"came_back": v[0], "sales_fen": v[1]} for g, v in _by_groups(counts).items()}
        for store, counts in sorted(per_store.items())
    }
    came_back = {g: groups[g][0] for g in GROUPS}
    sales_fen = {g: groups[g][1] for g in GROUPS}
    rate = {g: ratio_of(came_back[g], heads[g]) for g in GROUPS}

    def lift(group: str) -> Fraction | None:
        a, b = rate[group], rate["control"]
        return None if a is None or b is None else a - b

    incremental = {
        g: _incremental(sales_fen[g], heads[g], sales_fen["control"], heads["control"])
        for g in ("treated", "treated_all")
    }

    # -- messages: per channel and status (failed: refused or reported undelivered)
    sends = _t(CampaignSend)
    q = Sql(db)
    by_channel: dict[str, dict[str, int]] = {}
    skipped: dict[str, int] = {}
    for channel, status, reason, n, sent_n in q.run(
        "SELECT channel, status, reason, COUNT(*),"
        " COALESCE(SUM(CASE WHEN sent_at IS NOT NULL THEN 1 ELSE 0 END), 0)"
        f" FROM {sends} WHERE campaign = {q.p(campaign.id)}{_theirs(q, 'member_id', stores)}"
        " GROUP BY channel, status, reason"
    ):
        row = by_channel.setdefault(
            str(channel),
            {"sent": 0, "delivered": 0, "failed": 0, "skipped": 0, "waiting": 0},
        )
        row["sent"] += int(sent_n)
        if status in ("delivered", "failed", "skipped"):
            row[str(status)] += int(n)
        elif status in ("pending", "sending"):
            row["waiting"] += int(n)
        if status == "skipped":
            skipped[str(reason or "")] = skipped.get(str(reason or ""), 0) + int(n)
    sent = sum(r["sent"] for r in by_channel.values())

    # -- benefit: coupons issued and redeemed, points and gifts given
    benefit = campaign.benefit or {}
    issued = redeemed = redeemed_fen = 0
    if benefit.get("coupon"):
        q = Sql(db)
        (row,) = q.run(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'used' THEN 1 ELSE 0 END), 0),"
            " COALESCE(SUM(CASE WHEN status = 'used' THEN value ELSE 0 END), 0)"
            f" FROM {_t(Coupon)} WHERE template_id = {q.p(str(benefit['coupon']))}"
            f" AND source = 'campaign' AND ref = {q.p(f'campaign:{campaign.id}')}"
            f"{_theirs(q, 'member_id', stores)}"
        )
        issued, redeemed, redeemed_fen = map(int, row)
    benefited = CampaignRecipient.select().where(
        (CampaignRecipient.campaign == campaign.id)
        & CampaignRecipient.benefit_ref.is_null(False)
        & (CampaignRecipient.benefit_ref != "held")  # held: the member had the coupon limit
        & (CampaignRecipient.control == False)  # noqa: E712 - peewee builds SQL from ==
    )
    if stores is not None:
        theirs = Member.select(Member.id).where(Member.registered_store.in_(stores))
        benefited = benefited.where(CampaignRecipient.member_id.in_(theirs))
    given = benefited.count()
    points_given = int(benefit.get("points") or 0) * given
    points_fen = 0
    if points_given:
        from hq.programme.points import current_rules

        points_fen = fen_for_points(current_rules(), points_given)
    gifts_given = given if benefit.get("gift") else 0
    cost = {
        "messages": sent * int(campaign.message_cost_fen),
        "coupons": redeemed_fen,
        "points": points_fen,
        "gifts": gifts_given * int(benefit.get("gift_cost_fen") or 0),
    }
    cost["total"] = sum(cost.values())
    inc = incremental["treated"]

    kind = _audience_kind(campaign)
    return {
        "campaign": campaign.id,
        "status": campaign.status,
        "audience_kind": kind,
        "treated": heads["treated_all"],
        "reached": heads["treated"],
        "control": heads["control"],
        "sent": sent,
        "delivered": sum(r["delivered"] for r in by_channel.values()),
        "failed": sum(r["failed"] for r in by_channel.values()),
        "waiting": sum(r["waiting"] for r in by_channel.values()),
        "skipped": dict(sorted(skipped.items())),
        "by_channel": dict(sorted(by_channel.items())),
        "coupons_issued": issued,
        "coupons_redeemed": redeemed,
        "points_given": points_given,
        "gifts_given": gifts_given,
        "came_back": came_back,
        "came_back_rate": rate,
        "sales_fen": sales_fen,
        "lift": lift("treated"),
        "lift_all": lift("treated_all"),
        "incremental_sales_fen": inc,
        "incremental_sales_fen_all": incremental["treated_all"],
        "cost_fen": cost,
        "net_fen": None if inc is None else inc - cost["total"],
        "roi": None if inc is None or not cost["total"] else Fraction(inc, cost["total"]),
        "activation_rate": dict(rate) if kind in NEW_MEMBER_LISTS else None,
        "wake_rate": dict(rate) if kind in DORMANT_LISTS else None,
        "by_store": by_store,
        "stores": stores,
        "window": win,
    }


def as_json(figures: dict[str, Any]) -> dict[str, Any]:
    """``results`` for JSON: ratios as floats rounded to 4 places (display only), the
    window's instants as ISO text (naive UTC)."""
    out = _kpi_json({k: v for k, v in figures.items() if k != "window"})
    win = figures["window"]
    out["window"] = {
        "from": win["from"].isoformat(),
        "to": win["to"].isoformat(),
        "closed": win["closed"],
    }
    return out
