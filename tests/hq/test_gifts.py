"""The gift catalogue at HQ (SQLite and PostgreSQL): ``huiyuan-hq gift``, the ``gift``
change entity and snapshot records, ``huiyuan-hq adjust-points``, and HQ applying a
till's ``gift_redemption`` only when its points match the catalogue."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from click.testing import CliRunner

from core import protocol as p
from core.ids import uuid7
from hq.changes import snapshot_records
from hq.cli import main
from hq.ingest import ingest_batch
from hq.lookup import ChainLookup
from hq.models import (
    AuditEntry,
    Authorization,
    ChangeRecord,
    Gift,
    GiftRedemption,
    LedgerEntry,
    Member,
    PointsLot,
    ProcessedItem,
)
from hq.reconcile import hq_ledger_differences
from tests.hq.edge_sim import Items

NOW = dt.datetime(2026, 11, 23, 2, 0)


def cli(url: str, *args: str):
    return CliRunner().invoke(
        main, ["--database-url", url, "--mqtt-url", "mqtt://127.0.0.1:1", *args]
    )


def gift_changes() -> list[tuple[str, dict]]:
    rows = ChangeRecord.select().where(ChangeRecord.entity == "gift").order_by(ChangeRecord.seq)
    return [(r.key, r.data) for r in rows]


def test_gift_add_list_remove_are_audited_and_sent_down(hq_db, hq_db_url):
    added = cli(
        hq_db_url,
        "gift",
        "add",
        "G1",
        "--name",
        "保温杯",
        "--points",
        "500",
        "--sku",
        "P0001",
        "--to",
        "2026-12-31",
        "--by",
        "hq-alice",
    )
    assert added.exit_code == 0, added.output
    cli(
        hq_db_url,
        "gift",
        "add",
        "C1",
        "--name",
        "10元券",
        "--points",
        "800",
        "--kind",
        "coupon",
        "--template",
        "T-10",
        "--by",
        "hq-alice",
    )
    listed = cli(hq_db_url, "gift", "list", "--json")
    assert [g["gift_id"] for g in json.loads(listed.output)] == ["C1", "G1"]
    assert cli(hq_db_url, "gift", "remove", "G1", "--by", "hq-bob").exit_code == 0
    assert [g["gift_id"] for g in json.loads(cli(hq_db_url, "gift", "list", "--json").output)] == [
        "C1"
    ]
    assert "(removed)" in cli(hq_db_url, "gift", "list", "--all").output
    down = gift_changes()
    assert [k for k, _ in down] == ["G1", "C1", "G1"]
    assert down[0][1] == {
        "gift_id": "G1",
        "name": "保温杯",
        "points": 500,
        "kind": "goods",
        "sku": "P0001",
        "coupon_template": None,
        "active": True,
        "valid_from": None,
        "valid_to": "2026-12-31",
    }
    assert down[2][1]["active"] is False
    actions = [(a.action, a.actor, a.target) for a in AuditEntry.select().order_by(AuditEntry.id)]
    assert actions == [
        ("gift.add", "hq-alice", "G1"),
        ("gift.add", "hq-alice", "C1"),
        ("gift.remove", "hq-bob", "G1"),
    ]
    # a fresh store's snapshot carries the whole catalogue, removed gifts as inactive
    _, records = snapshot_records(hq_db, ChainLookup(lambda: (None, False)))
    gifts = {r["key"]: r["data"]["active"] for r in records if r["entity"] == "gift"}
    assert gifts == {"C1": True, "G1": False}
    for r in (r for r in snapshot_records(hq_db, ChainLookup(lambda: (None, False)))[1]):
        p.validate_change(r)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--points", "0", "--sku", "P1"], "points"),
        (["--points", "10"], "sku"),
        (["--points", "10", "--kind", "coupon"], "template"),
        (["--points", "10", "--sku", "P1", "--template", "T"], "sku"),
        (
            ["--points", "10", "--sku", "P1", "--from", "2026-12-02", "--to", "2026-12-01"],
            "valid_to",
        ),
        (["--points", "10", "--sku", "P1", "--from", "tomorrow"], "YYYY-MM-DD"),
    ],
)
def test_a_bad_gift_is_refused(hq_db, hq_db_url, args, words):
    out = cli(hq_db_url, "gift", "add", "G9", "--name", "杯", "--by", "hq-alice", *args)
    assert out.exit_code != 0 and words in out.output
    assert Gift.select().count() == 0


def test_adjust_points_from_the_command_line(hq_db, hq_db_url):
    Member.create(id="m-cli", created_at=NOW, updated_at=NOW)
    no_reason = cli(hq_db_url, "adjust-points", "m-cli", "100", "--by", "hq-alice", "--reason", " ")
    assert no_reason.exit_code != 0 and "原因" in no_reason.output
    out = cli(
        hq_db_url, "adjust-points", "m-cli", "100", "--by", "hq-alice", "--reason", "补录", "--json"
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output.splitlines()[-1])["points"] == 100
    down = cli(hq_db_url, "adjust-points", "m-cli", "-150", "--by", "hq-alice", "--reason", "扣")
    assert down.exit_code != 0 and "积分不足" in down.output
    assert Member.get_by_id("m-cli").points == 100
    assert AuditEntry.get(AuditEntry.action == "points.adjust").reason == "补录"


# ---- applying a till's redemption -------------------------------------------------------


def redemption(items: Items, member_id: str, gift_id: str, qty: int, each: int, **extra) -> dict:
    body = {
        "redemption_id": extra.pop("redemption_id", uuid7()),
        "member_id": member_id,
        "gift_id": gift_id,
        "name": "保温杯",
        "kind": extra.pop("kind", "goods"),
        "qty": qty,
        "points_each": each,
        "points_used": each * qty,
        "points_lots_used": extra.pop("lots", []),
        "sku": extra.pop("sku", "P0001"),
        "coupon_template": None,
        "coupon_codes": [],
        "cashier": "1001",
        "offline": False,
        "authorization_id": None,
        **extra,
    }
    return items._item("gift_redemption", body)


@pytest.fixture
def member_with_points(hq_db):
    items = Items("S001")
    mid = uuid7()
    batch = p.make_batch("S001", 1, [items.registration(mid, "13100000021")])
    ingest_batch(hq_db, "hy/v1/S001/up/tx", "S001", batch, NOW)
    Member.update(points=2000).where(Member.id == mid).execute()
    for lot_id, n, expires in (("L1", 800, "2027-01-01"), ("L2", 1200, "2027-11-01")):
        PointsLot.create(
            lot_id=lot_id,
            member_id=mid,
            earned_on=dt.date(2026, 11, 1),
            expires_on=dt.date.fromisoformat(expires),
            earned=n,
            remaining=n,
        )
        LedgerEntry.create(
            member_id=mid, balance="points", points=n, reason="sale", lot_id=lot_id, at=NOW
        )
    Gift.create(
        gift_id="G1",
        name="保温杯",
        points=500,
        kind="goods",
        sku="P0001",
        updated_at=NOW,
        updated_by="hq-alice",
    )
    return items, mid


def ingest(hq_db, items: Items, *up: dict):
    return ingest_batch(hq_db, "hy/v1/S001/up/tx", "S001", p.make_batch("S001", 1, list(up)), NOW)


def test_hq_applies_a_redemption_that_matches_its_catalogue(hq_db, member_with_points):
    items, mid = member_with_points
    Authorization.create(
        id=uuid7(),
        store="S001",
        sale_id="R-1",
        member_id=mid,
        points=1000,
        status="held",
        response={},
        created_at=NOW,
        expires_at=NOW + dt.timedelta(minutes=30),
    )
    up = redemption(items, mid, "G1", 2, 500, redemption_id="R-1", lots=[["L2", 1000]])
    outcome = ingest(hq_db, items, up)
    assert list(outcome.ack.rejected) == []
    assert Member.get_by_id(mid).points == 1000
    assert (PointsLot.get_by_id("L1").remaining, PointsLot.get_by_id("L2").remaining) == (800, 200)
    rows = LedgerEntry.select().where(LedgerEntry.reason == "gift")
    assert [(r.points, r.lot_id, r.ref) for r in rows] == [(-1000, "L2", "R-1")]
    assert GiftRedemption.get_by_id("R-1").points == 1000
    assert Authorization.get(Authorization.sale_id == "R-1").status == "settled"
    member_down = (
        ChangeRecord.select()
        .where((ChangeRecord.entity == "member") & (ChangeRecord.key == mid))
        .order_by(ChangeRecord.seq.desc())
        .first()
    )
    assert member_down.data["points"] == 1000
    assert member_down.data["through"]["S001"] == up["seq"]
    assert hq_ledger_differences(hq_db) == []


@pytest.mark.parametrize(
    ("gift_id", "each", "extra", "words"),
    [
        ("G1", 400, {}, "礼品积分与总部目录不符"),  # cheaper than the catalogue says
        ("G9", 500, {}, "不在总部目录"),
        ("G1", 500, {"sku": "P0002"}, "不符"),
        ("G1", 500, {"kind": "coupon"}, "不符"),
    ],
)
def test_hq_refuses_a_redemption_that_does_not_match(
    hq_db, member_with_points, gift_id, each, extra, words
):
    items, mid = member_with_points
    outcome = ingest(hq_db, items, redemption(items, mid, gift_id, 1, each, **extra))
    assert [r.code for r in outcome.ack.rejected] == ["apply_failed"]
    assert words in outcome.ack.rejected[0].reason
    assert Member.get_by_id(mid).points == 2000
    assert LedgerEntry.select().where(LedgerEntry.reason == "gift").count() == 0
    assert ProcessedItem.select().where(ProcessedItem.status == "rejected").count() == 1


def test_hq_refuses_a_gift_redeemed_outside_its_dates(hq_db, member_with_points):
    items, mid = member_with_points
    Gift.update(valid_to=dt.date(2026, 11, 1)).where(Gift.gift_id == "G1").execute()
    outcome = ingest(hq_db, items, redemption(items, mid, "G1", 1, 500))
    assert [r.code for r in outcome.ack.rejected] == ["apply_failed"]
    assert Member.get_by_id(mid).points == 2000


def test_hq_refuses_a_redemption_made_outside_the_redemption_window(hq_db, member_with_points):
    from core.rules import DEMO_RULES, RedemptionWindow
    from hq.rules import publish_rules

    items, mid = member_with_points
    window = RedemptionWindow(dt.date(2026, 12, 1), dt.date(2026, 12, 31), "感恩回馈月")
    rules = dataclasses.replace(DEMO_RULES, version=5, points_redemption_windows=(window,))
    publish_rules(hq_db, rules.to_dict())
    up = redemption(items, mid, "G1", 1, 500)
    up["rules_version"] = 5
    outcome = ingest(hq_db, items, up)
    assert [r.code for r in outcome.ack.rejected] == ["apply_failed"]
    assert "2026-12-01" in outcome.ack.rejected[0].reason
    assert Member.get_by_id(mid).points == 2000


def test_hq_never_spends_expired_points_beyond_the_lots_the_till_named(hq_db, member_with_points):
    """L1's last day passed before the redemption's day (the nightly expiry has not run):
    the points the till's named lot does not cover are a debt and an overdraft, never
    taken from the expired lot."""
    from hq.models import HqException

    items, mid = member_with_points
    PointsLot.update(expires_on=dt.date(2026, 11, 1)).where(PointsLot.lot_id == "L1").execute()
    Gift.update(points=1000).where(Gift.gift_id == "G1").execute()
    PointsLot.update(remaining=500).where(PointsLot.lot_id == "L2").execute()
    LedgerEntry.create(member_id=mid, balance="points", points=-700, reason="sale", at=NOW)
    Member.update(points=1300).where(Member.id == mid).execute()
    up = redemption(items, mid, "G1", 1, 1000, lots=[["L2", 500]])
    assert list(ingest(hq_db, items, up).ack.rejected) == []
    assert (PointsLot.get_by_id("L1").remaining, PointsLot.get_by_id("L2").remaining) == (800, 0)
    assert Member.get_by_id(mid).points == 300
    overdraft = HqException.get(HqException.kind == "overdraft")
    assert (overdraft.member_id, overdraft.amount, overdraft.status) == (mid, 500, "open")
    assert hq_ledger_differences(hq_db) == []
    # the nightly expiry takes the expired lot: the member owes what was overdrawn
    from hq.programme.points import expire_points

    expire_points(hq_db, dt.date(2026, 11, 24), NOW)
    assert Member.get_by_id(mid).points == -500
    assert hq_ledger_differences(hq_db) == []


def test_hq_never_spends_locked_points_beyond_the_lots_the_till_named(hq_db, member_with_points):
    from core.rules import DEMO_RULES
    from hq.models import HqException
    from hq.rules import publish_rules

    items, mid = member_with_points
    publish_rules(hq_db, dataclasses.replace(DEMO_RULES, version=6, points_lock_days=7).to_dict())
    # L2 was earned the day before the redemption (2026-11-23): locked until 11-29
    PointsLot.update(earned_on=dt.date(2026, 11, 22)).where(PointsLot.lot_id == "L2").execute()
    up = redemption(items, mid, "G1", 2, 500, lots=[["L1", 800]])
    up["rules_version"] = 6
    assert list(ingest(hq_db, items, up).ack.rejected) == []
    assert (PointsLot.get_by_id("L1").remaining, PointsLot.get_by_id("L2").remaining) == (0, 1200)
    overdraft = HqException.get(HqException.kind == "overdraft")
    assert (overdraft.member_id, overdraft.amount) == (mid, 200)
    assert hq_ledger_differences(hq_db) == []
