"""The till's fast reads of a member, against the rules they shortcut: the swipe's row
conversion against peewee's, and the points SQLite sums against core.points (points left,
last day not passed), however long the member's history."""

from __future__ import annotations

import datetime as dt

from core.points import Lot, balance, usable
from edge.models import Member, PointsLot
from edge.services import members as member_svc

TODAY = dt.date(2026, 11, 23)


def _lots() -> list[Lot]:
    day = dt.timedelta(days=1)
    return [
        Lot("a-spent", TODAY - 400 * day, TODAY + 5 * day, 0),
        Lot("b-expired-yesterday", TODAY - 366 * day, TODAY - day, 70),
        Lot("c-last-day-today", TODAY - 365 * day, TODAY, 30),
        Lot("d-live", TODAY - 10 * day, TODAY + 355 * day, 120),
        Lot("e-live", TODAY, TODAY + 365 * day, 5),
    ] + [  # years of sales whose points were all spent
        Lot(f"h-{i:04d}", TODAY - (700 - i) * day, TODAY - (335 - i) * day, 0) for i in range(600)
    ]


def _store(member_id: str, lots: list[Lot]) -> None:
    PointsLot.insert_many(
        [
            {
                "lot_id": lot.lot_id,
                "member_id": member_id,
                "earned_on": lot.earned_on.isoformat(),
                "expires_on": lot.expires_on.isoformat(),
                "remaining": lot.remaining,
                "origin": "test",
            }
            for lot in lots
        ]
    ).execute()


def test_balance_and_live_lots_follow_the_core_rule(demo_till):
    member = Member.select().first()
    other = Member.select().where(Member.id != member.id).first()
    PointsLot.delete().where(PointsLot.member_id.in_([member.id, other.id])).execute()
    lots = _lots()
    _store(member.id, lots)
    _store(other.id, [Lot("z-other", TODAY, TODAY + 365 * dt.timedelta(days=1), 999)])

    assert member_svc.points_balance(member.id, TODAY) == balance(lots, TODAY) == 155
    live = member_svc.live_lots(member.id, TODAY)
    assert sorted(live, key=lambda lot: lot.lot_id) == usable(lots, TODAY)
    assert {lot.lot_id for lot in live} == {"c-last-day-today", "d-live", "e-live"}
    # the day after, the lot whose last day was today is gone too
    tomorrow = TODAY + dt.timedelta(days=1)
    assert member_svc.points_balance(member.id, tomorrow) == balance(lots, tomorrow) == 125


def test_a_member_without_lots_has_no_points(demo_till):
    member = Member.select().first()
    PointsLot.delete().where(PointsLot.member_id == member.id).execute()
    assert member_svc.points_balance(member.id, TODAY) == 0
    assert member_svc.live_lots(member.id, TODAY) == []


def test_a_member_read_by_card_is_the_member_peewee_reads(demo_till):
    """member_from_row (the swipe's fast path) converts every column as peewee does."""
    from core.birthday import Birthday
    from edge.services.members import Registration, by_card, register

    reg = Registration(
        name="闰月生",
        phone="13912345678",
        gender="F",
        birthday=Birthday("lunar", 1990, 5, 10, leap_month=True),
        card_no="C7777",
        password="246810",
    )
    member = register(demo_till, reg, cashier="1001")
    swiped = by_card("C7777")
    stored = Member.get_by_id(member.id)
    assert swiped.__data__ == stored.__data__
    assert swiped.birthday_leap_month is True
    assert isinstance(swiped.phone_enc, bytes) and swiped.password_hash
