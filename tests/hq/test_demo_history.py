"""The demo's history (hq/demo_history.py) arrives through HQ's real ingest: every
history store has sales, members and returns month after month, nothing is refused or
dead-lettered, the live stores are untouched, and running it again adds nothing."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import peewee as pw
import pytest

from core.rules import DEMO_RULES
from hq import demo_history
from hq.demo_history import HISTORY_STORES, HistoryRefused, generate
from hq.models import (
    Coupon,
    DeadLetter,
    HqException,
    LedgerEntry,
    Member,
    ProcessedItem,
    Return,
    Sale,
    Store,
    TopUp,
)
from hq.rules import publish_rules

TODAY = dt.date(2026, 12, 5)
CODES = [code for code, _, _ in HISTORY_STORES]
LIVE = [("S001", "会员示范店·北京", "华北"), ("S002", "会员示范店·天津", "华北")]


def by_store_month(rows) -> dict[str, Counter]:
    out: dict[str, Counter] = {code: Counter() for code in CODES}
    for store, occurred_at in rows:
        out[store][occurred_at[:7]] += 1
    return out


def held() -> tuple[int, int, int, int, int]:
    return (
        ProcessedItem.select().count(),
        Sale.select().count(),
        Member.select().count(),
        Return.select().count(),
        TopUp.select().count(),
    )


def test_six_months_of_six_stores_arrive_through_ingest(hq_db):
    summary = generate(hq_db, live=LIVE, today=TODAY)
    assert summary.first_day == TODAY - dt.timedelta(days=demo_history.DAYS)
    assert 3000 <= summary.sales <= 8000 and summary.members >= 300
    assert summary.returns > 0 and summary.topups > 0
    # every item went through the ingest and was applied: cursors, processed items
    statuses = Counter(s for (s,) in ProcessedItem.select(ProcessedItem.status).tuples())
    assert statuses == {"applied": summary.items}
    for code, name, area in HISTORY_STORES:
        store = Store.get_by_id(code)
        assert (store.name, store.area, store.epoch, store.online) == (name, area, 1, False)
        assert store.acked_through == summary_items_of(code)
    assert DeadLetter.select().count() == 0
    assert HqException.select().count() == 0
    # sales, registrations and returns in every store, month after month
    sales = by_store_month(Sale.select(Sale.store, Sale.occurred_at).tuples())
    joined = by_store_month(Member.select(Member.registered_store, Member.registered_at).tuples())
    returns = by_store_month(Return.select(Return.store, Return.occurred_at).tuples())
    for code in CODES:
        assert len([m for m, n in sales[code].items() if n]) >= 4, (code, sales[code])
        assert len([m for m, n in joined[code].items() if n]) >= 4, (code, joined[code])
        assert len([m for m, n in returns[code].items() if n]) >= 4, (code, returns[code])
    # members and walk-ins; repeat customers; some shop at a sibling store of their area
    members = Sale.select().where(Sale.member_id.is_null(False)).count()
    assert 0.25 * summary.sales < members < 0.8 * summary.sales
    repeat = (
        Sale.select(Sale.member_id)
        .where(Sale.member_id.is_null(False))
        .group_by(Sale.member_id)
        .having(pw.fn.COUNT(Sale.sale_id) >= 3)
        .count()
    )
    assert repeat >= 100
    visits: dict[str, list[str]] = {}
    for member_id, at in Sale.select(Sale.member_id, Sale.occurred_at).tuples():
        if member_id:
            visits.setdefault(member_id, []).append(at[:10])
    woken = [  # a member away for two months or more who came back (唤醒)
        m
        for m, days in visits.items()
        if any(
            (dt.date.fromisoformat(b) - dt.date.fromisoformat(a)).days >= 60
            for a, b in zip(sorted(days), sorted(days)[1:], strict=False)
        )
    ]
    assert len(woken) >= 10
    home = dict(Member.select(Member.id, Member.registered_store).tuples())
    away = [s for s, m in Sale.select(Sale.store, Sale.member_id).tuples() if m and home[m] != s]
    assert away
    area = {code: a for code, _, a in HISTORY_STORES}
    assert all(area[s] in ("华东", "华南") for s in away)
    # several lines and quantities; stored value spent; lunar birthdays
    bodies = [b for (b,) in Sale.select(Sale.body).tuples()]
    assert max(len(b["lines"]) for b in bodies) >= 4
    assert any(line["qty"] > 1 for b in bodies for line in b["lines"])
    assert any(t["kind"] == "stored_value" for b in bodies for t in b["tenders"])
    assert any(t["kind"] == "points" for b in bodies for t in b["tenders"])
    assert not Member.select().where(Member.points < 0).exists()
    assert Member.select().where(Member.birthday_calendar == "lunar").count() > 0
    # welcome coupons given at the till, some of them used in a later sale
    assert summary.coupons > 0 and 0 < summary.coupons_used < summary.coupons
    assert Coupon.select().count() == summary.coupons
    assert Coupon.select().where(Coupon.status == "used").count() == summary.coupons_used
    # HQ's balances are its ledger's
    for member in Member.select():
        ledger = LedgerEntry.select(
            pw.fn.COALESCE(pw.fn.SUM(LedgerEntry.principal), 0),
            pw.fn.COALESCE(pw.fn.SUM(LedgerEntry.bonus), 0),
        ).where((LedgerEntry.member_id == member.id) & (LedgerEntry.balance == "stored_value"))
        assert tuple(ledger.tuples()[0]) == (member.sv_principal, member.sv_bonus)
        assert member.sv_principal >= 0 and member.sv_bonus >= 0
    # the live stores are named and placed, and nothing was written as them
    for code, name, area in LIVE:
        store = Store.get_by_id(code)
        assert (store.name, store.area, store.acked_through) == (name, area, 0)
    assert not ProcessedItem.select().where(ProcessedItem.store.in_(["S001", "S002"])).exists()

    # again, even on a later day: nothing added
    before = held()
    again = generate(hq_db, live=LIVE, today=TODAY + dt.timedelta(days=9))
    assert again.items == 0 and again.first_day == summary.first_day
    assert held() == before
    assert DeadLetter.select().count() == 0


def summary_items_of(code: str) -> int:
    return ProcessedItem.select().where(ProcessedItem.store == code).count()


def test_an_interrupted_history_is_completed_not_doubled(hq_db, monkeypatch):
    whole = demo_history.Plan(demo_history.rules_held(), TODAY - dt.timedelta(days=42), 42, 7)
    planned = sum(len(items) for week in whole.weeks() for items in week.values())
    sent = []
    real_send = demo_history._send

    def send_then_stop(db, code, items):
        if len(sent) == 9:
            raise KeyboardInterrupt
        sent.append(code)
        real_send(db, code, items)

    monkeypatch.setattr(demo_history, "_send", send_then_stop)
    with pytest.raises(KeyboardInterrupt):
        generate(hq_db, days=42, seed=7, today=TODAY)
    partial = ProcessedItem.select().count()
    assert 0 < partial < planned
    monkeypatch.setattr(demo_history, "_send", real_send)
    done = generate(hq_db, days=42, seed=7, today=TODAY + dt.timedelta(days=1))
    assert done.items == planned - partial
    assert ProcessedItem.select().count() == planned
    assert Counter(s for (s,) in ProcessedItem.select(ProcessedItem.status).tuples()) == {
        "applied": planned
    }
    assert DeadLetter.select().count() == 0 and HqException.select().count() == 0


def test_a_store_with_a_box_is_never_written_as(hq_db):
    with pytest.raises(HistoryRefused, match="S003"):
        generate(hq_db, live=[("S003", "上海", "华东")], days=14, today=TODAY)
    assert ProcessedItem.select().count() == 0


def test_no_rules_no_history(tmp_path, capsys):
    from hq.models import bind, open_database

    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    bind(open_database(url)).close()
    assert demo_history.main(["--database-url", url, "--days", "14"]) == 1
    assert "publish-rules" in capsys.readouterr().err


def test_the_command_prints_what_it_wrote_and_how_long_it_took(tmp_path, capsys):
    from hq.models import bind, open_database

    url = f"sqlite:///{tmp_path / 'hq.sqlite3'}"
    db = bind(open_database(url))
    publish_rules(db, DEMO_RULES.to_dict())
    db.close()
    args = ["--database-url", url, "--days", "21", "--live", "S001:会员示范店·北京:华北"]
    assert demo_history.main(args) == 0
    first = capsys.readouterr().out
    assert first.startswith("history: 6 stores, 21 days from ") and " s\n" in first
    assert demo_history.main(args) == 0
    assert "nothing added" in capsys.readouterr().out


def test_a_history_another_version_wrote_is_left_alone(hq_db):
    first = generate(hq_db, days=14, seed=7, today=TODAY)
    before = held()
    other = generate(hq_db, days=14, seed=8, today=TODAY)
    assert other.foreign == CODES and other.items == 0
    assert "left as it is" in other.line()
    assert held() == before and first.items == before[0]
