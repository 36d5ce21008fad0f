"""A behaviour window read from the summary rows ``window_cover`` picks (a year row less
the months outside the window, or the fewest periods inside it) gives each buyer the same
tickets, net fen and last day bought as the sales themselves, on SQLite and PostgreSQL,
whatever the window, its end and whether sales came after it."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from hq.marketing import audience
from hq.models import Member, Return, Sale, Store
from hq.reports import summary

STORES = ("S1", "S2", "S3")
FIRST_DAY = dt.date(2024, 6, 1)
LAST_DAY = dt.date(2027, 3, 31)  # sales after every window's end below, in its year too


def _day(rng: random.Random) -> dt.date:
    return FIRST_DAY + dt.timedelta(days=rng.randrange((LAST_DAY - FIRST_DAY).days + 1))


@pytest.fixture
def sales(hq_db) -> list[tuple[str, str, dt.date, int]]:
    """40 members, 600 sales and 80 returns at three stores over three years; returns
    the movements (member, kind, day, fen) the truth is summed from."""
    rng = random.Random(20261206)
    at = dt.datetime(2024, 1, 1)
    moves: list[tuple[str, str, dt.date, int]] = []
    with hq_db.atomic():
        for code in STORES:
            Store.create(code=code, name=code, area="华东", created_at=at)
        ids = [f"00000000-0000-0000-0000-{n:012d}" for n in range(40)]
        for n, member_id in enumerate(ids):
            Member.create(
                id=member_id, name=f"会员{n}", phone=f"1390000{n:04d}", created_at=at,
                updated_at=at, registered_at="2024-01-02T10:00:00+08:00",
                registered_store=STORES[n % 3],
            )  # fmt: skip
        sold: list[tuple[str, str, str, dt.date, int]] = []
        for seq in range(1, 601):
            member_id, store, day = rng.choice(ids[:36]), rng.choice(STORES), _day(rng)
            total = rng.randrange(100, 50_000)
            Sale.create(
                sale_id=f"SALE{seq}", store=store, seq=seq, member_id=member_id, total=total,
                rules_version=1, occurred_at=f"{day}T11:00:00+08:00", body={"lines": [{"qty": 1}]},
                ingested_at=at,
            )  # fmt: skip
            sold.append((f"SALE{seq}", member_id, store, day, total))
            moves.append((member_id, "sale", day, total))
        for seq, (sale_id, member_id, store, day, total) in enumerate(rng.sample(sold, 80), 1):
            back = min(day + dt.timedelta(days=rng.randrange(0, 40)), LAST_DAY)
            refund = rng.randrange(1, total + 1)
            Return.create(
                return_id=f"RET{seq}", sale_id=sale_id, store=store, seq=1000 + seq,
                member_id=member_id, refund_total=refund, occurred_at=f"{back}T15:00:00+08:00",
                body={"lines": [{"qty": 1}]}, ingested_at=at,
            )  # fmt: skip
            moves.append((member_id, "return", back, refund))
    summary.rebuild(hq_db)
    return moves


def truth(moves, first: dt.date, end: dt.date) -> dict[str, tuple[int, int, str]]:
    """Per buyer in [first, end): tickets, net fen, last day bought, from the sales."""
    out: dict[str, list] = {}
    for member_id, kind, day, fen in moves:
        if first <= day < end:
            row = out.setdefault(member_id, [0, 0, None])
            if kind == "sale":
                row[0] += 1
                row[1] += fen
                row[2] = max(row[2] or day, day)
            else:
                row[1] -= fen
    return {k: (f, v, last.isoformat()) for k, (f, v, last) in out.items() if f > 0}


def read_window(db, months: int, as_of: dt.date, today: dt.date, last_days=True) -> dict:
    b = audience.Builder(db, today, last_days)
    w = audience._window_cte(b, months, as_of)
    b.joins.append(audience.Part(f"JOIN {w} ON {w}.member_id = m.id"))
    rows = b.run(b.sql(f"{w}.member_id, {w}.f, {w}.v, {w}.last_day"))
    return {m: (int(f), int(v), str(last)[:10]) for m, f, v, last in rows}


AS_OF = [dt.date(2026, month, 15) for month in range(1, 13)] + [dt.date(2025, 7, 3)]


@pytest.mark.parametrize("months", [1, 3, 6, 12, 13, 24])
def test_every_window_sums_as_the_sales_do(hq_db, sales, months):
    signed = late = 0
    for as_of in AS_OF:
        first, end = audience._window(months, as_of)
        # "today" the window's own month (nothing recorded after it yet, as the console
        # asks) and a later day (a window in the past, sales after it)
        for today in (as_of, LAST_DAY):
            cover = audience.window_cover(first, end, today)
            signed += bool(cover.minus)
            late += cover.late is not None
            got = read_window(hq_db, months, as_of, today)
            want = truth(sales, first, end)
            assert got == want, (months, as_of, today, cover)
            # without the R of RFM no last day is read: the same buyers and sums
            sums = read_window(hq_db, months, as_of, today, last_days=False)
            assert {m: (f, v) for m, (f, v, _) in sums.items()} == {
                m: (f, v) for m, (f, v, _) in want.items()
            }
    if months >= 6:  # the signed reading, with and without a late year row, was checked
        assert signed and late


def test_the_cover_reads_a_year_row_where_months_and_quarters_were_six():
    first, end = audience._window(12, dt.date(2026, 11, 30))
    now = audience.window_cover(first, end, dt.date(2026, 11, 30))
    assert (now.plus, now.minus) == (
        [("month", dt.date(2025, 12, 1)), ("year", dt.date(2026, 1, 1))],
        [("month", dt.date(2026, 12, 1))],
    )
    assert now.late == (dt.date(2026, 1, 1), end, [("month", dt.date(2026, 12, 1))])
    # a calendar year: its one row; a quarter: its row, nothing subtracted
    whole = audience.window_cover(dt.date(2026, 1, 1), dt.date(2027, 1, 1), dt.date(2026, 12, 5))
    assert (whole.plus, whole.minus, whole.late) == ([("year", dt.date(2026, 1, 1))], [], None)
    quarter = audience.window_cover(dt.date(2026, 4, 1), dt.date(2026, 7, 1), dt.date(2026, 6, 5))
    assert (quarter.plus, quarter.minus) == ([("quarter", dt.date(2026, 4, 1))], [])
