"""Member change records built by the database (hq/bulk_changes.py) are the records
``hq.changes.member_state`` builds, field for field, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from core.ids import uuid7
from hq.bulk_changes import log_member_changes
from hq.changes import latest_change_seq, member_state
from hq.models import ChangeRecord, Member, PointsLot

NOW = dt.datetime(2026, 6, 30, 2, 0)


def lot(member_id: str, lot_id: str, earned: str, expires: str, remaining: int) -> None:
    PointsLot.create(
        lot_id=lot_id,
        member_id=member_id,
        earned_on=dt.date.fromisoformat(earned),
        expires_on=dt.date.fromisoformat(expires),
        earned=max(remaining, 1),
        remaining=remaining,
    )


@pytest.fixture
def members(hq_db) -> list[str]:
    rich = uuid7()
    Member.create(
        id=rich,
        name='王"五\\',  # characters JSON must escape
        phone="13900000001",
        gender="M",
        birthday="1990-02-29",
        birthday_leap_month=True,
        card_type="金卡",
        tier="钻",
        staff_code="E01",
        password_hash=None,
        registered_at="2025-01-01T10:00:00+08:00",
        registered_store="S1",
        sv_principal=12345,
        sv_bonus=678,
        points=-40,
        through={"S1": 17, "S2": 3},
        created_at=NOW,
        updated_at=NOW,
        growth=1068,
        tier_since=dt.date(2026, 6, 30),
        card_expires_on=dt.date(2027, 1, 31),
        occupation="教师",
        preferences=["茶", "书"],
        anniversaries=[{"name": "结婚", "date": "2010-05-01", "calendar": "solar"}],
        notes="多行\n备注",
        tags=["投诉"],
        extra={"shoe": 42, "vip": True},
        profile_score=85,
        referred_by=uuid7(),
    )
    lot(rich, "L3", "2026-03-01", "2027-03-01", 30)
    lot(rich, "L1", "2026-01-01", "2027-01-01", 10)
    lot(rich, "L2", "2026-02-01", "2027-01-01", 20)
    lot(rich, "L0", "2025-01-01", "2026-01-01", 0)  # spent: not sent
    plain = uuid7()
    Member.create(id=plain, created_at=NOW, updated_at=NOW)
    untouched = uuid7()
    Member.create(id=untouched, created_at=NOW, updated_at=NOW)
    return [rich, plain, untouched]


def test_records_are_member_state(hq_db, members):
    rich, plain, untouched = members
    before = latest_change_seq()
    with hq_db.atomic():
        n = log_member_changes(
            hq_db,
            f"SELECT id FROM member WHERE id IN ({hq_db.param}, {hq_db.param})",  # noqa: S608
            [rich, plain],
            NOW,
        )
    assert n == 2
    records = list(
        ChangeRecord.select().where(ChangeRecord.seq > before).order_by(ChangeRecord.seq)
    )
    assert [r.seq for r in records] == [before + 1, before + 2]
    assert latest_change_seq() == before + 2
    assert [r.key for r in records] == sorted([rich, plain])
    for record in records:
        assert (record.entity, record.op) == ("member", "upsert")
        assert record.data == member_state(Member.get_by_id(record.key))
    rich_record = next(r for r in records if r.key == rich)
    assert [lot["lot_id"] for lot in rich_record.data["points_lots"]] == ["L1", "L2", "L3"]
    assert untouched not in {r.key for r in records}


def test_nothing_selected_writes_nothing(hq_db, members):
    before = latest_change_seq()
    with hq_db.atomic():
        assert log_member_changes(hq_db, "SELECT id FROM member WHERE 1 = 0", [], NOW) == 0
    assert latest_change_seq() == before
