"""HQ's authorize_spend on its database (SQLite and PostgreSQL), without MQTT: its answers,
its round trips to the database, and holds from several stores at once on one member."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

import psycopg2
import pytest

from core.ids import uuid7
from core.protocol import AuthRequest
from core.rules import DEMO_RULES
from hq.auth import authorize_spend
from hq.models import Authorization, Coupon, Member, is_postgres
from hq.rules import publish_rules
from tests.sync.helpers import wait_until

NOW = dt.datetime(2026, 12, 4, 10, 0, 0)


def member(member_id: str = "m-1", principal: int = 1000, bonus: int = 0, points: int = 100) -> str:
    Member.create(
        id=member_id,
        sv_principal=principal,
        sv_bonus=bonus,
        points=points,
        created_at=NOW,
        updated_at=NOW,
    )
    return member_id


def hold(db: Any, member_id: str = "m-1", store: str = "S1", sale_id: str = "", **kw: Any):
    req = AuthRequest(store, sale_id or uuid7(), member_id, **kw)
    return authorize_spend(db, req, NOW)[0]


class RoundTrips:
    """The first word of every statement sent to the database through ``db.cursor()``
    (BEGIN and COMMIT too), one entry per ``execute`` or ``executemany``."""

    def __init__(self, db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sql: list[str] = []
        cursor = db.cursor

        def counting_cursor(*a: Any, **kw: Any) -> Any:
            return _Counting(cursor(*a, **kw), self.sql)

        monkeypatch.setattr(db, "cursor", counting_cursor)


class _Counting:
    def __init__(self, cursor: Any, sql: list[str]) -> None:
        self._cursor, self._sql = cursor, sql

    def _note(self, sql: str | bytes) -> None:
        text = sql.decode() if isinstance(sql, bytes) else sql
        self._sql.append(text.split()[0].upper())

    def execute(self, sql: str | bytes, *params: Any) -> Any:
        self._note(sql)
        return self._cursor.execute(sql, *params)

    def executemany(self, sql: str, rows: Any) -> Any:
        self._note(sql)
        return self._cursor.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def __iter__(self):
        return iter(self._cursor)


def test_hold_answers_and_retry_gets_the_same_answer(hq_db):
    member(principal=1000, bonus=200, points=50)
    sale = uuid7()
    first = hold(hq_db, sale_id=sale, stored_value=300, points=20)
    assert first.status == "approved"
    assert first.balances["points"] == 30
    again = hold(hq_db, sale_id=sale, stored_value=300, points=20)
    assert again == first
    assert Authorization.select().where(Authorization.sale_id == sale).count() == 1
    other = hold(hq_db, sale_id=sale, stored_value=301, points=20)
    assert (other.status, other.code) == ("declined", "conflict")


def test_holds_count_against_what_is_available_and_release_frees_them(hq_db):
    member(principal=1000, bonus=0, points=0)
    sale = uuid7()
    assert hold(hq_db, sale_id=sale, stored_value=700).status == "approved"
    short = hold(hq_db, stored_value=400)
    assert (short.status, short.code) == ("declined", "insufficient")
    released = authorize_spend(hq_db, AuthRequest("S1", sale, "m-1", action="release"), NOW)[0]
    assert released.status == "released"
    assert hold(hq_db, stored_value=400).status == "approved"


def test_declines_name_their_reason(hq_db):
    member(points=10)
    missing = hold(hq_db, member_id="nobody", points=1)
    assert (missing.status, missing.code) == ("declined", "unknown_member")
    assert hold(hq_db, member_id="nobody", sale_id=missing.sale_id, points=1) == missing
    points = hold(hq_db, points=11)
    assert (points.code, points.reason) == ("insufficient", "积分不足: 需要 11 分, 可用 10 分")
    assert hold(hq_db, coupons=("NOPE",)).code == "not_found"


def test_coupons_are_held_and_released(hq_db):
    member()
    Coupon.create(code="CPN1", member_id="m-1", value=500)
    sale = uuid7()
    req = AuthRequest("S1", sale, "m-1", coupons=("CPN1",))
    response, changes = authorize_spend(hq_db, req, NOW)
    assert response.status == "approved"
    assert Coupon.get_by_id("CPN1").status == "held"
    assert [(c.entity, c.key, c.data["status"]) for c in changes] == [("coupon", "CPN1", "held")]
    assert hold(hq_db, coupons=("CPN1",)).code == "coupon_unusable"
    authorize_spend(hq_db, AuthRequest("S1", sale, "m-1", action="release"), NOW)
    assert Coupon.get_by_id("CPN1").status == "issued"


def test_hold_follows_a_merge(hq_db):
    member("m-new", principal=100)
    Member.create(id="m-old", status="merged", merged_into="m-new", created_at=NOW, updated_at=NOW)
    ok = hold(hq_db, member_id="m-old", stored_value=100)
    assert ok.status == "approved"
    assert Authorization.get(Authorization.sale_id == ok.sale_id).member_id == "m-new"


def test_the_spend_order_follows_a_new_rules_version(hq_db):
    member(principal=100, bonus=100, points=0)
    rules = DEMO_RULES.to_dict()
    for order, expected in (("principal_first", 100), ("bonus_first", 0)):
        publish_rules(hq_db, rules | {"version": rules["version"] + 1, "stored_value_spend": order})
        rules = rules | {"version": rules["version"] + 1}
        approved = hold(hq_db, stored_value=100)
        assert approved.stored_value_split["principal"] == expected, order
        authorize_spend(hq_db, AuthRequest("S1", approved.sale_id, "m-1", action="release"), NOW)


def test_an_approved_hold_takes_five_round_trips(hq_db, monkeypatch):
    """BEGIN; the member locked with the sale's earlier authorization and the latest
    rules version; the sum of its live holds (after the lock, so it sees every hold
    committed before); the INSERT; COMMIT. It took seven; a new round trip here costs
    every till's authorization."""
    member()
    hold(hq_db, points=1)  # the rules' spend order is read once per version
    trips = RoundTrips(hq_db, monkeypatch)
    assert hold(hq_db, points=1).status == "approved"
    assert trips.sql == ["BEGIN", "SELECT", "SELECT", "INSERT", "COMMIT"]


@pytest.mark.postgres
@pytest.mark.parametrize("hq_db_url", ["postgres"], indirect=True)
def test_concurrent_holds_from_several_stores_never_overdraw(hq_db):
    assert is_postgres(hq_db)
    member(principal=1000, bonus=0, points=0)
    answers: list[Any] = []
    start = threading.Barrier(8)

    def till(store: str) -> None:
        start.wait()
        for _ in range(5):
            answers.append(hold(hq_db, store=store, stored_value=100))
        hq_db.close()

    threads = [threading.Thread(target=till, args=(f"S{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    approved = [a for a in answers if a.status == "approved"]
    assert len(answers) == 40
    assert len(approved) == 10
    assert sorted(a.balances["stored_value"]["principal"] for a in approved) == list(
        range(0, 1000, 100)
    )


@pytest.mark.postgres
@pytest.mark.parametrize("hq_db_url", ["postgres"], indirect=True)
def test_one_sale_asked_at_once_many_times_is_held_once(hq_db, hq_db_url, caplog):
    """Racing requests of one sale: all start while the member is locked elsewhere, so
    none sees another's answer; the unique (store, sale id) fails all INSERTs but the
    first, and those transactions are retried and answered from its row."""
    member(principal=1000, bonus=0, points=0)
    sale = uuid7()
    answers: list[Any] = []
    caplog.set_level(logging.INFO, logger="hq.ingest")

    def ask() -> None:
        answers.append(hold(hq_db, sale_id=sale, stored_value=300))
        hq_db.close()

    watcher = psycopg2.connect(hq_db_url)
    watcher.autocommit = True
    threads = [threading.Thread(target=ask) for _ in range(6)]
    try:
        with hq_db.atomic():
            Member.select().where(Member.id == "m-1").for_update().get()
            for t in threads:
                t.start()
            wait_until(lambda: _waiting_for_locks(watcher) == 6, 20, "6 requests at the lock")
        for t in threads:
            t.join(60)
    finally:
        watcher.close()
    assert len(answers) == 6
    assert all(a == answers[0] for a in answers)
    assert answers[0].status == "approved"
    held = Authorization.select().where(Authorization.status == "held")
    assert [a.sv_principal for a in held] == [300]
    assert caplog.text.count("transaction retry") >= 5  # each of the others raced


def _waiting_for_locks(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cur.fetchone()[0]
