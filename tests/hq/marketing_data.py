"""A small fixed chain for the marketing tests (tests/hq/test_marketing*.py): two stores,
a dozen members with hand-picked registrations, purchases, birthdays and tags; the
summary tables built from them as ``huiyuan-hq reports-rebuild`` does.

The day the tests stand on is 2026-12-01 (a Tuesday): the December lists, the week from
Monday 2026-11-30."""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw

from hq.models import Member, Sale, Store
from hq.reports import summary

TODAY = dt.date(2026, 12, 1)
NOW = dt.datetime(2026, 12, 1, 1, 0)  # 09:00 in Shanghai

# name: (store, registered day, birthday, calendar, leap, card type, tier, maintainer, tags)
MEMBERS: dict[str, tuple[Any, ...]] = {
    "A": ("S1", "2026-11-01", "1990-12-31", "solar", False, "普通卡", "银卡", "E1", None),
    "B": ("S2", "2026-11-30", "12-01", "solar", False, "年卡", None, "E2", None),
    "C": ("S1", "2026-12-01", "1980-11-07", "lunar", False, "普通卡", "金卡", "E1", None),
    "D": ("S1", "2026-10-31", "1980-10-07", "lunar", False, "普通卡", None, "E1", None),
    "E": ("S1", "2025-01-10", "1975-10-23", "lunar", False, "年卡", "金卡", "E1", ["投诉"]),
    "F": (
        "S2",
        "2025-01-10",
        "1990-11-30",
        "solar",
        False,
        "普通卡",
        "银卡",
        "E2",
        ["退款", "老客"],
    ),
    "G": ("S2", "2025-02-01", None, "solar", False, "普通卡", None, "E2", None),
    "H": ("S1", "2026-11-05", "1991-12-05", "solar", False, "普通卡", None, "E1", None),  # merged
    "J": ("S2", "2026-03-01", "1988-06-15", "solar", False, "年卡", "银卡", "E2", None),
    "K": ("S1", "2026-06-01", "1970-07-01", "solar", False, "普通卡", None, "E1", None),
}

# (member, store, day, total fen, categories)
SALES: list[tuple[str, str, str, int, list[str]]] = [
    ("A", "S1", "2026-11-01", 10000, ["药品"]),
    ("A", "S1", "2026-11-20", 5000, ["保健品"]),
    ("C", "S1", "2026-12-01", 3000, ["药品"]),
    ("E", "S1", "2026-08-31", 20000, ["器械"]),
    ("E", "S2", "2026-05-03", 1000, ["药品"]),
    ("F", "S2", "2026-09-01", 8000, ["保健品"]),
    ("F", "S2", "2026-10-11", 9000, ["保健品"]),
    ("F", "S1", "2026-11-11", 500, ["药品"]),
    ("J", "S2", "2026-03-01", 40000, ["器械"]),
    ("J", "S2", "2026-04-01", 30000, ["器械"]),
    ("J", "S2", "2026-05-01", 30000, ["器械"]),
    ("J", "S2", "2026-06-02", 1000, ["药品"]),
    ("K", "S1", "2026-06-01", 2000, ["药品"]),
]

MEMBER_ID = {name: f"00000000-0000-0000-0000-0000000000{i:02d}" for i, name in enumerate(MEMBERS)}


def load(db: pw.Database) -> dict[str, str]:
    """The chain, loaded and summarised; returns name -> member id."""
    at = dt.datetime(2026, 11, 1)
    with db.atomic():
        Store.create(code="S1", name="一店", area="华东", created_at=at)
        Store.create(code="S2", name="二店", area="华南", created_at=at)
        for name, (store, reg, bday, cal, leap, ctype, tier, staff, tags) in MEMBERS.items():
            Member.create(
                id=MEMBER_ID[name],
                name=f"会员{name}",
                phone=f"1380000{ord(name):04d}",
                birthday=bday,
                birthday_calendar=cal,
                birthday_leap_month=leap,
                card_type=ctype,
                tier=tier,
                staff_code=staff,
                registered_at=f"{reg}T10:00:00+08:00",
                registered_store=store,
                status="merged" if name == "H" else "active",
                merged_into=MEMBER_ID["A"] if name == "H" else None,
                tags=tags,
                created_at=at,
                updated_at=at,
            )
        for seq, (name, store, day, total, categories) in enumerate(SALES, start=1):
            Sale.create(
                sale_id=f"SALE{seq}",
                store=store,
                seq=seq,
                member_id=MEMBER_ID[name],
                total=total,
                rules_version=1,
                occurred_at=f"{day}T11:00:00+08:00",
                body={"lines": [{"qty": 1}]},
                ingested_at=at,
                line_goods=[
                    {"line_no": i, "sku": f"P{i}", "category": c, "cost": None}
                    for i, c in enumerate(categories, start=1)
                ],
            )
    summary.rebuild(db)
    return dict(MEMBER_ID)


def names(ids: list[str]) -> list[str]:
    """Member ids back to the fixture's names, sorted."""
    back = {v: k for k, v in MEMBER_ID.items()}
    return sorted(back[i] for i in ids)
