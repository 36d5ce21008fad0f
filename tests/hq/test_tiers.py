"""Tiers and growth value at HQ (hq/programme/tiers.py), on SQLite and PostgreSQL: the
spend summary kept by the ingest, the set-based evaluation held to core.tiers' rules,
manual tiers, the nightly job, and stores' rules status."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from click.testing import CliRunner

from core import protocol as p
from core.errors import HuiyuanError, ProtocolError
from core.ids import uuid7
from core.rules import DEMO_RULES, Rules, TierRules, TierStep
from core.tiers import decide
from hq import scheduler
from hq.audit import entries
from hq.cli import main as hq_cli
from hq.ingest import ingest_batch
from hq.models import (
    AuditEntry,
    ChangeRecord,
    GrowthEvent,
    Member,
    MemberDaySpend,
    Store,
    TierChange,
    bind,
)
from hq.programme import tiers
from hq.rules import publish_rules
from tests.hq.conftest import hq_config
from tests.hq.edge_sim import TZ, Items

NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
DAY = dt.date(2026, 6, 30)
LADDER = (TierStep("银", 0), TierStep("金", 1000), TierStep("钻", 5000))
TR = TierRules(ladder=LADDER, growth_per_yuan=1, window_days=365, lapse_days=90)
RULES = Rules(version=1, tier_discount={"金": 950, "钻": 900, "VIP": 850}, tiers=TR)


def ago(days: int) -> dt.date:
    return DAY - dt.timedelta(days=days)


def ingest(store: str, items: list[dict]) -> p.Ack:
    outcome = ingest_batch(
        Member._meta.database, p.up_topic(store, "tx"), store, p.make_batch(store, 1, items), NOW
    )
    assert outcome.ack is not None, outcome.dead_letter
    assert outcome.ack.rejected == (), outcome.ack.rejected
    return outcome.ack


def member(
    tier: str | None = None, since: dt.date | None = None, growth: int = 0, **extra: Any
) -> str:
    mid = uuid7()
    now = dt.datetime(2026, 1, 1)
    Member.create(
        id=mid, tier=tier, tier_since=since, growth=growth, created_at=now, updated_at=now, **extra
    )
    return mid


def spend(mid: str, day: dt.date, fen: int, sales: int = 1) -> None:
    MemberDaySpend.create(member_id=mid, day=day, spend=fen, sales=sales)


def state(mid: str) -> tuple[str | None, int, dt.date | None]:
    m = Member.get_by_id(mid)
    return m.tier or None, m.growth, m.tier_since


# ---- the spend summary kept by the ingest ---------------------------------------------


def test_sales_and_returns_keep_the_spend_summary(hq_db, hq_db_url, store_code):
    items = Items(store_code)
    mid = uuid7()
    registration = items.registration(mid, "13900000001")
    sale = items.sale(mid, 12345, points_earned=None)
    second = items.sale(mid, 1000)
    ingest(store_code, [registration, sale, second])
    day = dt.datetime.fromisoformat(sale["occurred_at"]).date()
    row = MemberDaySpend.get(member_id=mid, day=day)
    assert (row.spend, row.sales) == (13345, 2)
    ret = items.return_of(sale["body"], points_reversed=sale["body"]["points_earned"])
    ingest(store_code, [ret])
    row = MemberDaySpend.get(member_id=mid, day=day)
    assert (row.spend, row.sales) == (1000, 2)
    # derived data: rebuilt from the sales and returns by one command, it is the same
    before = sorted(MemberDaySpend.select().tuples())
    MemberDaySpend.update(spend=0).execute()
    out = CliRunner().invoke(hq_cli, ["--database-url", hq_db_url, "rebuild-growth-spend"])
    bind(hq_db, create=False)
    assert out.exit_code == 0 and "1 member-days rebuilt" in out.output, out.output
    assert sorted(MemberDaySpend.select().tuples()) == before


def test_points_tenders_are_not_spend(hq_db, store_code):
    items = Items(store_code)
    mid = uuid7()
    ingest(
        store_code,
        [
            items.registration(mid, "13900000002"),
            items.sale(mid, 10000, points_earned=100),
            items.sale(mid, 10000, points_used=100),  # 100 points pay 1 yuan
        ],
    )
    (row,) = MemberDaySpend.select().where(MemberDaySpend.member_id == mid)
    assert (row.spend, row.sales) == (19900, 2)
    assert tiers.rebuild_spend(hq_db) == 1
    (row,) = MemberDaySpend.select().where(MemberDaySpend.member_id == mid)
    assert (row.spend, row.sales) == (19900, 2)


# ---- the evaluation, held to core.tiers -----------------------------------------------

# (case, member's tier, tier_since, spend rows [(days ago, fen, sales)], events
#  [(kind, points, days ago)], manual (tier, until days ahead) , expected tier, reason)
CASES = [
    ("new member, no spend", None, None, [], [], None, "银", "upgrade"),
    ("unchanged", "银", ago(10), [(1, 50_000, 1)], [], None, "银", None),
    ("upgrade", "银", ago(10), [(1, 100_000, 1)], [], None, "金", "upgrade"),
    (
        "exactly on the threshold",
        "银",
        ago(10),
        [(1, 60_000, 1), (3, 40_000, 1)],
        [],
        None,
        "金",
        "upgrade",
    ),
    ("one fen under it", "银", ago(10), [(1, 99_999, 1)], [], None, "银", None),
    ("events count", "银", ago(10), [(1, 90_000, 1)], [("review", 100, 2)], None, "金", "upgrade"),
    (
        "window: a year ago is out",
        "金",
        ago(400),
        [(365, 500_000, 1), (1, 100, 1)],
        [],
        None,
        "银",
        "downgrade",
    ),
    (
        "window: the window's first day is in",
        "金",
        ago(400),
        [(364, 99_000, 1), (1, 1_000, 1)],
        [],
        None,
        "金",
        None,
    ),
    (
        "returns taken off",
        "金",
        ago(400),
        [(5, 150_000, 1), (2, -60_000, 0)],
        [],
        None,
        "银",
        "downgrade",
    ),
    ("decay: no purchase in 90 days", "钻", ago(400), [(100, 600_000, 1)], [], None, "金", "decay"),
    ("decayed already", "金", ago(1), [(100, 600_000, 1)], [], None, "金", None),
    ("manual floor", "钻", ago(5), [(1, 100, 1)], [], ("钻", 0), "钻", None),
    ("manual floor expired", "钻", ago(5), [(1, 100, 1)], [], ("钻", -1), "银", "downgrade"),
    (
        "off the ladder: the rung growth earns",
        "黑卡",
        ago(5),
        [(1, -1, 0)],
        [],
        None,
        "银",
        "upgrade",
    ),
]


@pytest.mark.parametrize(
    ("case", "tier", "since", "rows", "events", "manual", "expected", "reason"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_evaluation_follows_the_rules(
    hq_db, case, tier, since, rows, events, manual, expected, reason
):
    mid = member(tier, since)
    for days, fen, sales in rows:
        spend(mid, ago(days), fen, sales)
    for kind, points, days in events:
        GrowthEvent.create(
            member_id=mid, kind=kind, points=points, ref=uuid7(), day=ago(days), at=NOW
        )
    if manual:
        tiers.ManualTier.create(
            member_id=mid,
            tier=manual[0],
            until=DAY + dt.timedelta(days=manual[1]),
            by="hq",
            reason="VIP",
            at=NOW,
        )
    counts = tiers.evaluate_tiers(hq_db, DAY, RULES)
    got_tier, got_growth, got_since = state(mid)
    assert got_tier == expected, case
    # the SQL does what core.tiers says for the same figures
    net = sum(f for d, f, _ in rows if d < 365)
    growth = max(0, net) // 100 + sum(pts for _, pts, _ in events)
    assert got_growth == growth, case
    buys = [ago(d) for d, _, s in rows if s > 0 and d < 365]
    pure = decide(
        TR,
        DAY,
        tier,
        since,
        growth,
        max(buys) if buys else None,
        manual[0] if manual else None,
        DAY + dt.timedelta(days=manual[1]) if manual else None,
    )
    assert (pure.tier or None, pure.reason) == (expected, reason), case
    changes = list(TierChange.select().where(TierChange.member_id == mid))
    if reason is None:
        assert changes == [] and got_since == since
        assert counts.get("upgrade", 0) + counts["downgrade"] + counts["decay"] == 0
    else:
        assert [(c.from_tier, c.to_tier, c.reason, c.growth) for c in changes] == [
            (tier, expected, reason, growth)
        ]
        assert got_since == DAY and counts[reason] == 1
        sent = ChangeRecord.select().where(
            (ChangeRecord.entity == "member") & (ChangeRecord.key == mid)
        )
        assert [c.data["tier"] for c in sent] == [expected]
        assert [c.data["growth"] for c in sent] == [growth]


def test_minimum_hold_delays_a_downgrade(hq_db):
    rules = Rules(version=1, tiers=TierRules(ladder=LADDER, min_hold_days=30))
    held = member("钻", ago(29))
    free = member("钻", ago(30))
    tiers.evaluate_tiers(hq_db, DAY, rules)
    assert state(held)[0] == "钻"
    assert state(free)[0] == "银"


def test_the_evaluation_is_idempotent_for_a_day(hq_db):
    up, down = member("银", ago(10)), member("钻", ago(400))
    spend(up, ago(1), 700_000)
    first = tiers.evaluate_tiers(hq_db, DAY, RULES)
    assert (first["upgrade"], first["downgrade"]) == (1, 1)
    logged = ChangeRecord.select().count()
    again = tiers.evaluate_tiers(hq_db, DAY, RULES)
    assert again == {"members_changed": 0, "upgrade": 0, "downgrade": 0, "decay": 0}
    assert ChangeRecord.select().count() == logged
    assert TierChange.select().count() == 2
    assert (state(up)[0], state(down)[0]) == ("钻", "银")


def test_growth_only_changes_update_the_member_but_send_nothing(hq_db):
    mid = member("银", ago(10), growth=5)
    spend(mid, ago(1), 20_000)
    counts = tiers.evaluate_tiers(hq_db, DAY, RULES)
    assert counts["members_changed"] == 1 and state(mid) == ("银", 200, ago(10))
    assert ChangeRecord.select().where(ChangeRecord.key == mid).count() == 0


def test_no_ladder_evaluates_nothing(hq_db):
    mid = member("钻石", ago(10))
    spend(mid, ago(1), 10**7)
    assert tiers.evaluate_tiers(hq_db, DAY, DEMO_RULES)["members_changed"] == 0
    assert state(mid)[:2] == ("钻石", 0)


def test_evaluation_uses_the_newest_published_rules(hq_db):
    publish_rules(hq_db, Rules(version=2, tier_discount={"金": 950}, tiers=TR).to_dict())
    mid = member()
    spend(mid, ago(1), 100_000)
    tiers.evaluate_tiers(hq_db, DAY)
    assert state(mid)[0] == "金"


# ---- a return after a tier change -----------------------------------------------------


def test_a_return_after_a_tier_change_refunds_as_sold_and_the_tier_follows(hq_db, store_code):
    items = Items(store_code)
    items.clock = dt.datetime.combine(DAY, dt.time(10), TZ)
    mid = uuid7()
    registration = items.registration(mid, "13900000003")
    big = items.sale(mid, 150_000)
    ingest(store_code, [registration, big])
    assert tiers.evaluate_tiers(hq_db, DAY, RULES)["upgrade"] == 1
    assert state(mid)[0] == "金"
    # the member is 金 now; the sale made as 银 comes back: refunded as sold, in full
    ret = items.return_of(big["body"], points_reversed=big["body"]["points_earned"])
    assert ret["body"]["refund_total"] == big["body"]["total"]
    ingest(store_code, [ret])
    tomorrow = DAY + dt.timedelta(days=1)
    counts = tiers.evaluate_tiers(hq_db, tomorrow, RULES)
    assert counts["downgrade"] == 1
    assert state(mid) == ("银", 0, tomorrow)
    reasons = [c.reason for c in TierChange.select().order_by(TierChange.id)]
    assert reasons == ["upgrade", "downgrade"]


# ---- growth for actions ---------------------------------------------------------------


def test_action_growth_is_granted_once(hq_db):
    rules = Rules(
        version=1,
        tiers=TierRules(
            ladder=LADDER,
            events={"profile_complete": 300, "referral": 700, "review": 50},
            profile_complete_score=80,
        ),
    )
    referrer = member(profile_score=80)
    newcomer = member(referred_by=referrer, profile_score=79)
    first = tiers.grant_action_growth(hq_db, DAY, rules)
    assert first == {"profile_complete": 1, "referral": 1}
    assert tiers.grant_action_growth(hq_db, DAY, rules) == {"profile_complete": 0, "referral": 0}
    assert tiers.record_growth_event(hq_db, newcomer, "review", "review-1", DAY, rules)
    assert not tiers.record_growth_event(hq_db, newcomer, "review", "review-1", DAY, rules)
    assert not tiers.record_growth_event(hq_db, newcomer, "birthday", "b-1", DAY, rules)
    tiers.evaluate_tiers(hq_db, DAY, rules)
    assert state(referrer)[:2] == ("金", 1000)
    assert state(newcomer)[:2] == ("银", 50)


# ---- a tier given by hand -------------------------------------------------------------


def test_a_manual_tier_is_audited_held_until_its_day_then_evaluated(hq_db):
    mid = member("银", ago(100))
    until = DAY + dt.timedelta(days=2)
    change = tiers.set_tier(hq_db, mid, "钻", "wang", "大客户", DAY, until=until, rules=RULES)
    assert (change.from_tier, change.to_tier, change.reason, change.by) == (
        "银",
        "钻",
        "manual",
        "wang",
    )
    assert state(mid) == ("钻", 0, DAY)
    (audit,) = entries(hq_db, action="tier.set")
    assert (audit["actor"], audit["target"], audit["reason"]) == ("wang", mid, "大客户")
    assert audit["details"]["until"] == until.isoformat()
    sent = ChangeRecord.select().where(ChangeRecord.key == mid)
    assert [c.data["tier"] for c in sent] == ["钻"]
    # held through its last day, evaluated the day after
    for day in (DAY, until):
        tiers.evaluate_tiers(hq_db, day, RULES)
        assert state(mid)[0] == "钻"
    after = until + dt.timedelta(days=1)
    assert tiers.evaluate_tiers(hq_db, after, RULES)["downgrade"] == 1
    assert state(mid) == ("银", 0, after)
    # the same again is nothing new
    assert tiers.set_tier(hq_db, mid, "银", "wang", "再次", after, rules=RULES) is None


@pytest.mark.parametrize(
    ("tier", "by", "reason", "until", "field"),
    [
        ("钻", "wang", "", None, "reason"),
        ("钻", "", "大客户", None, "by"),
        ("黑卡", "wang", "大客户", None, "tier"),
        ("钻", "wang", "大客户", DAY - dt.timedelta(days=1), "until"),
        ("VIP", "wang", "大客户", DAY, "until"),  # has a discount, but a floor needs a rung
    ],
)
def test_a_manual_tier_is_refused_without_what_it_needs(hq_db, tier, by, reason, until, field):
    mid = member("银", ago(100))
    with pytest.raises(HuiyuanError) as exc:
        tiers.set_tier(hq_db, mid, tier, by, reason, DAY, until=until, rules=RULES)
    assert exc.value.field == field
    assert state(mid)[0] == "银" and AuditEntry.select().count() == 0


def test_set_tier_command(hq_db, hq_db_url):
    publish_rules(hq_db, RULES.to_dict() | {"version": 2})
    mid = member("银", ago(100))
    runner = CliRunner()
    base = ["--database-url", hq_db_url, "set-tier", mid]
    args = [*base, "金", "--by", "wang", "--reason", "补录", "--until", "2099-01-01"]
    out = runner.invoke(hq_cli, args, catch_exceptions=False)
    bind(hq_db, create=False)
    assert out.exit_code == 0, out.output
    assert "银 -> 金" in out.output
    assert state(mid)[0] == "金"
    assert tiers.ManualTier.get_by_id(mid).until == dt.date(2099, 1, 1)
    out = runner.invoke(hq_cli, [*base, "钻", "--by", "wang", "--reason", " "])
    bind(hq_db, create=False)
    assert out.exit_code != 0 and "reason" in out.output
    assert state(mid)[0] == "金"


# ---- the nightly job ------------------------------------------------------------------


def test_the_first_run_after_an_upgrade_fills_the_spend_summary(hq_db, store_code):
    publish_rules(hq_db, RULES.to_dict() | {"version": 2})
    items = Items(store_code)
    items.clock = dt.datetime.combine(DAY, dt.time(10), TZ)
    mid = uuid7()
    registration = items.registration(mid, "13900000009")
    ingest(store_code, [registration, items.sale(mid, 150_000)])
    MemberDaySpend.delete().execute()  # as an HQ before this release left it
    counts = tiers.run_nightly(hq_db, DAY)
    assert counts["spend_rebuilt"] == 1 and counts["upgrade"] == 1
    assert state(mid)[:2] == ("金", 1500)
    assert tiers.run_nightly(hq_db, DAY)["spend_rebuilt"] == 0


def test_the_tier_evaluation_job_runs_for_the_business_day(hq_db, hq_db_url):
    publish_rules(hq_db, RULES.to_dict() | {"version": 2})
    mid = member()
    (job,) = [j for j in scheduler.JOBS if j.name == "tier-evaluation"]
    assert job.every == dt.timedelta(days=1)
    # 2026-06-30 17:00 UTC is 07-01 01:00 in Shanghai: the chain's day is 07-01
    spend(mid, dt.date(2026, 7, 1), 100_000)
    ctx = scheduler.JobContext(
        hq_db, hq_config(hq_db_url, None), lambda: dt.datetime(2026, 6, 30, 17)
    )
    run = scheduler.record_run(hq_db, job, "node-a", ctx)
    assert run.status == "ok", run.error
    assert run.counts["upgrade"] == 1 and state(mid)[0] == "金"
    again = scheduler.record_run(hq_db, job, "node-a", ctx)
    assert again.counts["upgrade"] == 0 and again.counts["members_changed"] == 0


# ---- stores' rules status -------------------------------------------------------------


def test_rules_status_items_show_which_stores_are_behind(hq_db, hq_db_url, store_code):
    publish_rules(hq_db, RULES.to_dict() | {"version": 2})
    current, behind = Items(store_code), Items(f"{store_code}b")
    ingest(
        current.store,
        [
            current._item(
                "rules_status",
                {
                    "version_in_force": 2,
                    "refused_version": None,
                    "reason": "",
                    "at": "2026-06-30T10:00:00+08:00",
                },
            )
        ],
    )
    refusal = {
        "version_in_force": 1,
        "refused_version": 2,
        "reason": "unknown rules keys: ['tiers']",
        "at": "2026-06-30T10:00:00+08:00",
    }
    item = behind._item("rules_status", refusal)
    ingest(behind.store, [item])
    store = Store.get_by_id(behind.store)
    assert (store.rules_version, store.rules_refused_version) == (1, 2)
    assert "tiers" in store.rules_refused_reason
    status = tiers.rules_status(hq_db)
    assert status["newest_version"] == 2
    by_store = {s["store"]: s for s in status["stores"]}
    assert by_store[current.store]["behind"] is False
    assert by_store[behind.store]["behind"] is True
    assert by_store[behind.store]["refused_version"] == 2
    runner = CliRunner()
    base = ["--database-url", hq_db_url, "rules-status"]
    out = runner.invoke(hq_cli, [*base, "--json", "--behind"])
    assert out.exit_code == 0, out.output
    assert [s["store"] for s in json.loads(out.output)["stores"]] == [behind.store]
    out = runner.invoke(hq_cli, base)
    bind(hq_db, create=False)
    assert f"{behind.store}  in force 1  BEHIND  refused 2" in out.output
    from hq.services import list_stores

    listed = {s["code"]: s for s in list_stores()}
    assert listed[behind.store]["rules_refused_version"] == 2


@pytest.mark.parametrize(
    "body",
    [
        {"version_in_force": -1, "at": "2026-06-30T10:00:00+08:00"},
        {"version_in_force": 1, "refused_version": 0, "at": "2026-06-30T10:00:00+08:00"},
        {"version_in_force": 1, "reason": "x" * 501, "at": "2026-06-30T10:00:00+08:00"},
        {"version_in_force": "1", "at": "2026-06-30T10:00:00+08:00"},
        {"version_in_force": 1},
    ],
)
def test_a_malformed_rules_status_is_refused(body):
    item = Items("S1")._item("rules_status", body)
    with pytest.raises(ProtocolError):
        p.validate_item(item)


# ---- a merge moves the growth record ---------------------------------------------------


def test_a_merge_moves_spend_and_events_to_the_survivor(hq_db):
    from hq.changes import ChangeSet
    from hq.members import merge_members

    survivor, loser = member(), member()
    spend(survivor, ago(1), 30_000)
    spend(loser, ago(1), 50_000)
    spend(loser, ago(2), 40_000)
    GrowthEvent.create(member_id=loser, kind="review", points=7, ref="r1", day=ago(1), at=NOW)
    with hq_db.atomic():
        merge_members(
            hq_db,
            loser,
            survivor,
            store=None,
            staff="hq",
            reason="manual",
            now=dt.datetime(2026, 6, 30),
            changes=ChangeSet(),
        )
    days = {
        r.day: (r.spend, r.sales)
        for r in MemberDaySpend.select().where(MemberDaySpend.member_id == survivor)
    }
    assert days == {ago(1): (80_000, 2), ago(2): (40_000, 1)}
    assert MemberDaySpend.select().where(MemberDaySpend.member_id == loser).count() == 0
    assert GrowthEvent.get(GrowthEvent.ref == "r1").member_id == survivor
    tiers.evaluate_tiers(hq_db, DAY, RULES)
    assert state(survivor)[:2] == ("金", 1207)


def test_evaluate_tiers_command(hq_db, hq_db_url):
    publish_rules(hq_db, RULES.to_dict() | {"version": 2})
    mid = member()
    spend(mid, ago(1), 100_000)
    args = ["--database-url", hq_db_url, "evaluate-tiers", "--day", DAY.isoformat()]
    out = CliRunner().invoke(hq_cli, args)
    bind(hq_db, create=False)
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["upgrade"] == 1 and state(mid)[0] == "金"
    out = CliRunner().invoke(hq_cli, [*args[:3], "--day", "30/06/2026"])
    bind(hq_db, create=False)
    assert out.exit_code != 0 and "--day" in out.output
