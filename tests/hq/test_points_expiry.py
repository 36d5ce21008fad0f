"""Points at HQ (SQLite and PostgreSQL): the nightly expiry, the balances authorization
counts (never expired or locked points), and manual adjustments (hq/programme/points.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from core.errors import ValidationError
from core.ids import uuid7
from core.protocol import AuthRequest, json_text
from core.rules import DEMO_RULES, RedemptionWindow
from hq.auth import authorize_spend
from hq.changes import member_state
from hq.config import HqConfig
from hq.models import AuditEntry, ChangeRecord, JobRun, LedgerEntry, Member, PointsLot
from hq.programme.points import adjust_points, expire_points
from hq.reconcile import hq_ledger_differences
from hq.rules import publish_rules
from hq.scheduler import JOBS, JobContext, record_run

TODAY = dt.date(2026, 12, 4)
NOW = dt.datetime(2026, 12, 4, 18, 0, 0)  # 02:00 on the 5th in Shanghai
DAY = dt.timedelta(days=1)


def member(member_id: str, lots: list[tuple[str, dt.date, dt.date, int]]) -> str:
    """A member whose points are the sum of its lots, each earned through the ledger."""
    Member.create(
        id=member_id,
        points=sum(n for *_, n in lots),
        created_at=NOW,
        updated_at=NOW,
    )
    for lot_id, earned_on, expires_on, n in lots:
        PointsLot.create(
            lot_id=lot_id,
            member_id=member_id,
            earned_on=earned_on,
            expires_on=expires_on,
            earned=n,
            remaining=n,
        )
        LedgerEntry.create(
            member_id=member_id,
            balance="points",
            points=n,
            reason="sale",
            ref=lot_id,
            lot_id=lot_id,
            at=NOW,
        )
    return member_id


def remaining(lot_id: str) -> int:
    return PointsLot.get_by_id(lot_id).remaining


def expiry_rows(member_id: str) -> list[tuple[str, int, str]]:
    q = LedgerEntry.select().where(
        (LedgerEntry.member_id == member_id) & (LedgerEntry.reason == "expiry")
    )
    return sorted((e.lot_id, e.points, e.ref) for e in q)


def last_change(member_id: str) -> dict:
    rec = (
        ChangeRecord.select()
        .where((ChangeRecord.entity == "member") & (ChangeRecord.key == member_id))
        .order_by(ChangeRecord.seq.desc())
        .first()
    )
    return rec.data if rec else {}


# ---- the nightly expiry -----------------------------------------------------------


@pytest.mark.parametrize(
    ("lots", "day", "expired", "points_after"),
    [
        # (lot, earned_on offset, expires_on offset, points) relative to TODAY
        ([("a", -400, -1, 50), ("b", -300, 0, 30), ("c", -10, 300, 20)], 0, {"a": 50}, 50),
        # the lot whose last day is today is usable today and gone tomorrow
        ([("a", -400, -1, 50), ("b", -300, 0, 30), ("c", -10, 300, 20)], 1, {"a": 50, "b": 30}, 20),
        # nothing past its last day
        ([("c", -10, 300, 20)], 0, {}, 20),
        # every lot gone
        ([("a", -400, -5, 7), ("b", -400, -1, 3)], 0, {"a": 7, "b": 3}, 0),
    ],
)
def test_expiry_posts_one_row_per_lot_zeroes_it_and_lowers_the_balance(
    hq_db, lots, day, expired, points_after
):
    mid = member(
        "m-exp",
        [(f"L{n}", TODAY + k * DAY, TODAY + e * DAY, p) for n, k, e, p in lots],
    )
    other = member("m-fresh", [("F1", TODAY, TODAY + 100 * DAY, 9)])
    on = TODAY + day * DAY
    counts = expire_points(hq_db, on, NOW)
    assert counts == {"expired_lots": len(expired), "members": 1 if expired else 0}
    ref = f"expiry:{on.isoformat()}"
    assert expiry_rows(mid) == sorted((f"L{k}", -v, ref) for k, v in expired.items())
    for name, *_ in lots:
        if name in expired:
            assert remaining(f"L{name}") == 0
    assert Member.get_by_id(mid).points == points_after
    assert Member.get_by_id(other).points == 9 and remaining("F1") == 9
    assert hq_ledger_differences(hq_db) == []
    if expired:  # the member goes down with its balance and only its live lots
        data = last_change(mid)
        assert data["points"] == points_after
        assert {lot["lot_id"] for lot in data["points_lots"]} == {
            f"L{n}" for n, *_ in lots if n not in expired
        }
        # on PostgreSQL built by the database: the same state member_state gives
        state = member_state(Member.get_by_id(mid))
        assert data == json.loads(json_text(state))
    assert last_change(other) == {}
    # a re-run the same day posts nothing more and sends nobody
    seq_before = ChangeRecord.select().count()
    assert expire_points(hq_db, on, NOW) == {"expired_lots": 0, "members": 0}
    assert expiry_rows(mid) == sorted((f"L{k}", -v, ref) for k, v in expired.items())
    assert ChangeRecord.select().count() == seq_before


def test_expiry_after_a_partial_spend_takes_only_what_is_left(hq_db):
    mid = member("m-part", [("P1", TODAY - 400 * DAY, TODAY - DAY, 100)])
    PointsLot.update(remaining=40).where(PointsLot.lot_id == "P1").execute()
    Member.update(points=40).where(Member.id == mid).execute()
    LedgerEntry.create(
        member_id=mid, balance="points", points=-60, reason="sale", lot_id="P1", at=NOW
    )
    assert expire_points(hq_db, TODAY, NOW)["expired_lots"] == 1
    assert expiry_rows(mid) == [("P1", -40, "expiry:2026-12-04")]
    assert Member.get_by_id(mid).points == 0
    assert hq_ledger_differences(hq_db) == []


def test_expiry_leaves_a_member_in_debt_alone(hq_db):
    # a negative balance holds no lots: nothing to expire, the debt stays
    Member.create(id="m-debt", points=-30, created_at=NOW, updated_at=NOW)
    LedgerEntry.create(member_id="m-debt", balance="points", points=-30, reason="sale", at=NOW)
    PointsLot.create(
        lot_id="D1",
        member_id="m-debt",
        earned_on=TODAY - 400 * DAY,
        expires_on=TODAY - DAY,
        earned=10,
        remaining=0,
    )
    assert expire_points(hq_db, TODAY, NOW) == {"expired_lots": 0, "members": 0}
    assert Member.get_by_id("m-debt").points == -30


def test_the_scheduler_job_runs_for_the_business_day_and_records_its_counts(
    hq_db, hq_db_url, monkeypatch
):
    # 18:00 UTC on the 4th is already the 5th in Shanghai: a lot whose last day was
    # the 4th expires
    member("m-job", [("J1", TODAY - 300 * DAY, TODAY, 12), ("J2", TODAY, TODAY + 9 * DAY, 5)])
    config = HqConfig(database_url=hq_db_url, timezone="Asia/Shanghai")
    pushed = []
    monkeypatch.setattr("hq.cli.push_changes", lambda cfg, changes: pushed.append(changes))
    job = next(j for j in JOBS if j.name == "points-expiry")
    assert job.every == dt.timedelta(days=1)
    run = record_run(hq_db, job, "node-1", JobContext(hq_db, config, lambda: NOW))
    assert run.status == "ok", run.error
    assert run.counts == {"expired_lots": 1, "members": 1}
    # the changed member is pushed to the stores after the commit
    assert [[(c.entity, c.key, c.data["points"]) for c in p] for p in pushed] == [
        [("member", "m-job", 5)]
    ]
    again = record_run(hq_db, job, "node-1", JobContext(hq_db, config, lambda: NOW))
    assert again.counts == {"expired_lots": 0, "members": 0}
    assert len(pushed) == 1  # nothing changed, nothing pushed
    assert JobRun.select().where(JobRun.job == "points-expiry").count() == 2
    assert Member.get_by_id("m-job").points == 5
    assert hq_ledger_differences(hq_db) == []


# ---- what authorization counts ------------------------------------------------------


def hold(db, member_id: str, points: int, today: dt.date = TODAY):
    req = AuthRequest("S1", uuid7(), member_id, points=points)
    return authorize_spend(db, req, NOW, today)[0]


def test_authorization_never_counts_expired_points_before_the_job_ran(hq_db):
    mid = member(
        "m-auth", [("X1", TODAY - 400 * DAY, TODAY - DAY, 80), ("X2", TODAY, TODAY + 9 * DAY, 20)]
    )
    declined = hold(hq_db, mid, 21)
    assert declined.status == "declined" and "可用 20 分" in declined.reason
    approved = hold(hq_db, mid, 20)
    assert approved.status == "approved"
    assert approved.balances["points"] == 0
    # the lot whose last day is today counts today
    assert hold(hq_db, member("m-today", [("T1", TODAY - 9 * DAY, TODAY, 30)]), 30).status == (
        "approved"
    )


def test_authorization_never_counts_locked_points(hq_db):
    rules = dataclasses.replace(DEMO_RULES, version=2, points_lock_days=7)
    publish_rules(hq_db, rules.to_dict())
    mid = member(
        "m-lock",
        [
            ("K1", TODAY - 7 * DAY, TODAY + 300 * DAY, 10),
            ("K2", TODAY - 6 * DAY, TODAY + 300 * DAY, 90),
        ],
    )
    assert hold(hq_db, mid, 11).status == "declined"  # K2 unlocks tomorrow
    assert hold(hq_db, mid, 10).status == "approved"
    assert hold(hq_db, mid, 90, TODAY + DAY).status == "approved"


def test_authorization_outside_the_redemption_window_is_declined_saying_when_it_opens(hq_db):
    window = RedemptionWindow(dt.date(2026, 12, 10), dt.date(2026, 12, 31), "感恩回馈月")
    rules = dataclasses.replace(DEMO_RULES, version=3, points_redemption_windows=(window,))
    publish_rules(hq_db, rules.to_dict())
    mid = member("m-win", [("W1", TODAY - 9 * DAY, TODAY + 300 * DAY, 500)])
    answer = hold(hq_db, mid, 100)
    assert answer.status == "declined" and answer.code == "redemption_closed"
    assert "2026-12-10" in answer.reason and "感恩回馈月" in answer.reason
    assert hold(hq_db, mid, 100, dt.date(2026, 12, 10)).status == "approved"
    # stored value alone is not a redemption
    Member.update(sv_principal=1000).where(Member.id == mid).execute()
    req = AuthRequest("S1", uuid7(), mid, stored_value=100)
    assert authorize_spend(hq_db, req, NOW, TODAY)[0].status == "approved"


# ---- manual adjustment ----------------------------------------------------------------


def test_a_positive_adjustment_makes_a_lot_expiring_by_the_rules(hq_db):
    rules = dataclasses.replace(DEMO_RULES, version=4, points_reset_date="12-31")
    publish_rules(hq_db, rules.to_dict())
    mid = member("m-adj", [])
    out = adjust_points(hq_db, mid, 300, by="hq-alice", reason="客诉补偿", today=TODAY, now=NOW)
    assert out["points"] == 300 and out["expires_on"] == "2026-12-30"
    lot = PointsLot.get_by_id(out["lot_id"])
    assert (lot.remaining, lot.earned_on, lot.expires_on) == (300, TODAY, dt.date(2026, 12, 30))
    entry = LedgerEntry.get(LedgerEntry.member_id == mid)
    assert (entry.reason, entry.points, entry.lot_id) == ("adjust", 300, out["lot_id"])
    audit = AuditEntry.get(AuditEntry.target == mid)
    assert (audit.action, audit.actor, audit.reason) == ("points.adjust", "hq-alice", "客诉补偿")
    assert audit.details["delta"] == 300
    assert last_change(mid)["points"] == 300
    assert hq_ledger_differences(hq_db) == []


def test_a_negative_adjustment_takes_the_soonest_expiring_lots_and_never_goes_below_zero(hq_db):
    mid = member(
        "m-neg",
        [
            ("N1", TODAY - 9 * DAY, TODAY + 300 * DAY, 50),
            ("N2", TODAY - 9 * DAY, TODAY + 10 * DAY, 30),
            ("N0", TODAY - 400 * DAY, TODAY - DAY, 40),  # expired, not yet zeroed
        ],
    )
    with pytest.raises(ValidationError) as err:
        adjust_points(hq_db, mid, -81, by="hq-alice", reason="录错", today=TODAY, now=NOW)
    assert err.value.field == "delta"
    out = adjust_points(hq_db, mid, -40, by="hq-alice", reason="录错", today=TODAY, now=NOW)
    assert out["lots"] == [["N2", 30], ["N1", 10]]
    assert (remaining("N2"), remaining("N1"), remaining("N0")) == (0, 40, 40)
    assert Member.get_by_id(mid).points == 80
    assert hq_ledger_differences(hq_db) == []
    expire_points(hq_db, TODAY, NOW)
    assert Member.get_by_id(mid).points == 40
    assert hq_ledger_differences(hq_db) == []


@pytest.mark.parametrize(
    ("delta", "by", "reason", "field"),
    [(10, "hq-alice", "", "reason"), (10, "", "原因", "by"), (0, "hq-alice", "原因", "delta")],
)
def test_an_adjustment_needs_who_why_and_a_number(hq_db, delta, by, reason, field):
    mid = member("m-bad", [])
    with pytest.raises(ValidationError) as err:
        adjust_points(hq_db, mid, delta, by=by, reason=reason, today=TODAY, now=NOW)
    assert err.value.field == field
    assert AuditEntry.select().count() == 0


def test_a_member_with_every_field_goes_down_as_member_state_says(hq_db):
    mid = member(
        "m-full", [("F1", TODAY - 400 * DAY, TODAY - DAY, 5), ("F2", TODAY, TODAY + DAY, 6)]
    )
    Member.update(
        name="张三",
        phone="13800000001",
        birthday="1990-02-03",
        birthday_leap_month=True,
        tier="金卡",
        sv_principal=100,
        sv_bonus=20,
        through={"S1": 7},
        tier_since=TODAY,
        card_expires_on=TODAY + DAY,
        preferences=["茶"],
        anniversaries=[{"name": "结婚", "date": "2010-05-01", "calendar": "solar"}],
        tags=["投诉"],
        extra={"车牌": "沪A"},
        profile_score=80,
    ).where(Member.id == mid).execute()
    expire_points(hq_db, TODAY, NOW)
    state = member_state(Member.get_by_id(mid))
    assert last_change(mid) == json.loads(json_text(state))
    assert [lot["lot_id"] for lot in state["points_lots"]] == ["F2"]


def test_after_a_large_expiry_only_the_last_change_is_pushed(hq_db, hq_db_url, monkeypatch):
    """Stores see a gap after their cursor and page through the rest themselves."""
    for n in range(3):
        member(f"m-big{n}", [(f"B{n}", TODAY - 400 * DAY, TODAY - DAY, 10)])
    pushed = []
    monkeypatch.setattr("hq.cli.push_changes", lambda cfg, changes: pushed.append(changes))
    monkeypatch.setattr("hq.programme.points.PUSH_ALL_UP_TO", 2)
    config = HqConfig(database_url=hq_db_url)
    job = next(j for j in JOBS if j.name == "points-expiry")
    run = record_run(hq_db, job, "node-1", JobContext(hq_db, config, lambda: NOW))
    assert run.counts == {"expired_lots": 3, "members": 3}
    last = ChangeRecord.select().order_by(ChangeRecord.seq.desc()).first()
    assert [[c.seq for c in p] for p in pushed] == [[last.seq]]
