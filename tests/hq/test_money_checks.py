"""HQ posts only money that adds up (issue 9, defects 1, 3 and 4).

The attacks are hand-made items fed to the real ingest (``ingest_batch``, on SQLite and
PostgreSQL): each must be dead-lettered and acknowledged as refused, with the reason
naming what did not add up, and must move no balance. The points-debt case drives a
real till and a real HQ worker through the broker.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from peewee import fn

from core import protocol as p
from core.ids import uuid7
from edge.models import Outbox
from edge.services import members as member_svc
from edge.services import sales as sales_svc
from edge.services.context import SpendDecision, SpendRequest
from edge.sync.apply import down_cursor
from hq import ingest as hq_ingest
from hq.ingest import ingest_batch
from hq.ledger import ledger_sums
from hq.models import (
    ChangeRecord,
    DeadLetter,
    HqException,
    LedgerEntry,
    Member,
    PointsLot,
    Return,
    Sale,
)
from tests.hq.edge_sim import Items
from tests.hq.test_ingest import balances_match_ledger
from tests.sync.helpers import StoreBox, wait_until

NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
ZHANG = "13800000001"
MANAGER = {"code": "9001", "pin": "9999"}


# ---- helpers --------------------------------------------------------------------------


def ingest(store: str, items: list[dict]) -> p.Ack:
    outcome = ingest_batch(
        Member._meta.database, p.up_topic(store, "tx"), store, p.make_batch(store, 1, items), NOW
    )
    assert outcome.ack is not None, outcome.dead_letter
    return outcome.ack


def balances(member_id: str) -> tuple[int, int, int]:
    """A member's stored value (principal, bonus) and points, checked against the ledger."""
    balances_match_ledger(member_id)
    m = Member.get_by_id(member_id)
    return m.sv_principal, m.sv_bonus, m.points


def refused(ack: p.Ack, seq: int) -> p.Rejection:
    found = [r for r in ack.rejected if r.seq == seq]
    assert found, f"seq {seq} was not refused: {ack}"
    assert ack.acked_through >= seq  # acknowledged as refused: the store moves on
    assert DeadLetter.select().where(DeadLetter.seq == seq).count() >= 1
    return found[0]


def member_with_money(store: str, items: Items) -> str:
    """A member with ¥600 of stored value (50,000 principal + 10,000 bonus) and 100 points."""
    mid = uuid7()
    ack = ingest(
        store,
        [
            items.registration(mid, f"139{int(uuid7()[-8:], 16) % 10**8:08d}"),
            items.topup(mid, 50000, 10000),
            items.sale(mid, 10000, points_earned=100),
        ],
    )
    assert ack.rejected == ()
    assert balances(mid) == (50000, 10000, 100)
    return mid


def body_of(item: dict) -> dict[str, Any]:
    return item["body"]


# ---- the three attacks --------------------------------------------------------


def test_negative_stored_value_principal_is_refused_and_moves_nothing(hq_db, store_code):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    attack = items.sale(mid, 10000)
    body_of(attack)["stored_value"]["principal"] = -50000  # "a refund of ¥500" inside a sale
    ack = ingest(store_code, [attack])
    rejection = refused(ack, attack["seq"])
    assert rejection.code == "invalid"
    assert "principal" in rejection.reason
    assert balances(mid) == (50000, 10000, 100)
    assert Sale.get_or_none(Sale.sale_id == body_of(attack)["sale_id"]) is None


def test_return_of_a_sale_hq_never_saw_is_refused(hq_db, store_code):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    attack = items.return_of(
        {"sale_id": uuid7(), "member_id": mid},
        lines=[{"line_no": 1, "sku": "6901234567890", "name": "洗发水", "qty": 1, "amount": 77700}],
        tenders=[{"kind": "stored_value", "amount": 77700}],
        stored_value=(77700, 0),
    )
    ack = ingest(store_code, [attack])
    rejection = refused(ack, attack["seq"])
    assert rejection.code == "apply_failed"
    assert "sale" in rejection.reason
    assert balances(mid) == (50000, 10000, 100)
    assert Return.select().count() == 0


def test_points_earned_on_a_zero_total_are_refused(hq_db, store_code):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    attack = items.sale(mid, 0, points_earned=300)
    assert body_of(attack)["total"] == 0
    ack = ingest(store_code, [attack])
    rejection = refused(ack, attack["seq"])
    assert rejection.code == "apply_failed"
    assert "points_earned" in rejection.reason
    assert balances(mid) == (50000, 10000, 100)


# ---- every other figure of a sale -----------------------------------------------------


def _tamper(body: dict, change: dict) -> None:
    for path, value in change.items():
        target = body
        *parents, last = path.split(".")
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value


@pytest.mark.parametrize(
    ("change", "code", "named"),
    [
        # the stored value split must be what the stored value tender says
        ({"stored_value": {"principal": 6000, "bonus": 0}}, "apply_failed", "stored_value"),
        ({"stored_value": {"principal": 0, "bonus": 0}}, "apply_failed", "stored_value"),
        # tenders must add up to the total
        ({"tenders.1.amount": 100}, "apply_failed", "tenders"),
        # points used must be what the points tender is worth under the rules
        ({"points_used": 10}, "apply_failed", "points_used"),
        # the total and every line must be HQ's re-pricing
        ({"total": 1}, "apply_failed", "total"),
        ({"lines.0.amount": 1}, "apply_failed", "lines"),
        # points earned must be the rules' points for what was paid
        ({"points_earned": 1000}, "apply_failed", "points_earned"),
        # signs and bounds are refused before HQ looks at the money
        ({"change": -5}, "invalid", "change"),
        ({"points_used": -100}, "invalid", "points_used"),
        ({"tenders.0.amount": -1}, "invalid", "amount"),
        ({"points_earned": 10**12}, "invalid", "points_earned"),
    ],
)
def test_a_sale_that_does_not_add_up_is_refused(hq_db, store_code, change, code, named):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    honest = items.sale(mid, 10000, stored_value=(4000, 1000), points_used=100)
    tampered = items.sale(mid, 10000, stored_value=(4000, 1000), points_used=100)
    _tamper(body_of(tampered), change)
    ack = ingest(store_code, [honest, tampered])
    rejection = refused(ack, tampered["seq"])
    assert (rejection.code, named in rejection.reason) == (code, True), rejection
    # only the honest sale moved money: 5,000 fen of stored value, 100 points used, 99 earned
    assert balances(mid) == (46000, 9000, 99)


def test_a_sale_without_a_member_moves_no_balance(hq_db, store_code):
    items = Items(store_code)
    attack = items.sale(None, 1000, stored_value=(500, 0))
    ack = ingest(store_code, [attack])
    assert refused(ack, attack["seq"]).code == "apply_failed"
    assert LedgerEntry.select().count() == 0


# ---- returns --------------------------------------------------------------------------


def test_returns_are_checked_against_the_sale_and_earlier_returns(hq_db, store_code):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    sale = items.sale(mid, 10000, stored_value=(4000, 1000))  # 5,000 stored value, 5,000 cash
    assert ingest(store_code, [sale]).rejected == ()
    assert balances(mid) == (46000, 9000, 200)
    # half the stored value back as principal only: the split must be the sale's
    skewed = items.return_of(
        body_of(sale),
        refund_total=10000,
        tenders=[{"kind": "stored_value", "amount": 5000}, {"kind": "cash", "amount": 5000}],
        stored_value=(5000, 0),
        points_reversed=100,
    )
    honest = items.return_of(body_of(sale), points_reversed=100)
    again = items.return_of(body_of(sale), points_reversed=100)  # nothing left to return
    ack = ingest(store_code, [skewed, honest, again])
    assert refused(ack, skewed["seq"]).code == "apply_failed"
    assert "stored_value" in refused(ack, skewed["seq"]).reason
    assert [r.seq for r in ack.rejected] == [skewed["seq"], again["seq"]]
    assert "line 1" in refused(ack, again["seq"]).reason
    assert balances(mid) == (50000, 10000, 100)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"refund_total": 20000}, "refund_total"),
        ({"lines": [{"line_no": 1, "qty": 2, "amount": 20000}]}, "line 1"),
        ({"lines": [{"line_no": 2, "qty": 1, "amount": 10000}]}, "line 2"),
        ({"points_reversed": 0}, "points_reversed"),
        ({"tenders": [{"kind": "stored_value", "amount": 10000}]}, "tenders"),
        ({"points_restored": 50}, "points_restored"),
    ],
)
def test_a_return_that_does_not_add_up_is_refused(hq_db, store_code, change, named):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    sale = items.sale(mid, 10000)
    bad = items.return_of(body_of(sale), points_reversed=100)
    body_of(bad).update(change)
    ack = ingest(store_code, [sale, bad])
    rejection = refused(ack, bad["seq"])
    assert rejection.code == "apply_failed"
    assert named in rejection.reason, rejection
    assert balances(mid) == (50000, 10000, 200)


# ---- top-ups --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("principal", "bonus", "code"),
    [
        (50000, 20000, "apply_failed"),  # the rules give 10,000 for 50,000
        (10000, 1, "apply_failed"),  # and nothing below 50,000
        (0, 0, "invalid"),
        (-50000, 0, "invalid"),
        (p.MAX_AMOUNT + 1, 0, "invalid"),
    ],
)
def test_a_topup_bonus_must_be_the_rules_bonus(hq_db, store_code, principal, bonus, code):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    bad = items.topup(mid, principal, bonus)
    ack = ingest(store_code, [bad])
    assert refused(ack, bad["seq"]).code == code
    assert balances(mid) == (50000, 10000, 100)


# ---- rules HQ does not hold -----------------------------------------------------------


def test_an_unknown_rules_version_is_one_exception_and_sales_are_still_checked(hq_db, store_code):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    first = [items.sale(mid, 1000, rules_version=77) for _ in range(3)]
    ack = ingest(store_code, first)
    assert ack.rejected == ()
    broken = items.sale(mid, 1000, rules_version=77)
    body_of(broken)["tenders"][0]["amount"] += 1  # tenders no longer add up to the total
    later = items.sale(mid, 1000, rules_version=77)
    ack = ingest(store_code, [broken, later])
    assert [r.seq for r in ack.rejected] == [broken["seq"]]
    rows = list(HqException.select().where(HqException.store == store_code))
    assert [(r.kind, r.ref) for r in rows] == [("unknown_rules", "77")]
    assert "77" in rows[0].details["reason"]
    assert Sale.select().where(Sale.rules_version == 77).count() == 4


# ---- defect 1 and 3: a return after the points were spent -----------------------------


class ApprovedOnline:
    """HQ answers yes to every spend (the authorization round trip is not under test)."""

    def authorize(self, request: SpendRequest) -> SpendDecision:
        return SpendDecision(online=True, approved=True)


def caught_up(box: StoreBox) -> None:
    """Wait until the till has applied every change HQ has logged (its own echo too)."""
    latest = ChangeRecord.select(fn.MAX(ChangeRecord.seq)).scalar()
    wait_until(lambda: box.query(down_cursor) >= latest, 30, f"down cursor at {latest}")


def _friday_clock():  # noqa: ANN202
    tz = dt.timezone(dt.timedelta(hours=8))
    state = {"at": dt.datetime(2026, 11, 27, 10, 0, tzinfo=tz)}  # a Friday: no member day

    def now() -> dt.datetime:
        state["at"] += dt.timedelta(seconds=30)
        return state["at"]

    return now


def test_points_returned_after_being_spent_are_one_debt_everywhere(
    tmp_path, mosquitto, worker, hq_db
):
    """张三 (金卡) earns 320 on sale A, spends 180 on sale B, A comes back in full: the till
    shows -180, and so must HQ (balance and ledger), with no overdraft to act on; the
    next earnings pay the debt at both."""
    box = StoreBox(tmp_path / "a", f"M{uuid7()[-6:]}", mosquitto, authorizer=ApprovedOnline())
    try:
        box.till.clock = _friday_clock()
        box.load_demo(members=2)
        zhang = {"card_no": "C0001"}
        two_rice = [{"sku": "P0010", "qty": 2}]  # 2 × 80.10 after 金卡's 10% off: 320 points
        sale_a = box.sell(zhang, two_rice, [{"kind": "cash", "amount": 20000}])
        assert sale_a["points_earned"] == 320
        box.sell(zhang, [{"sku": "P0001", "qty": 1}], [{"kind": "points", "amount": 180}])
        with box.bound():
            staff = box.staff()
            ret = sales_svc.return_sale(box.till, staff, sale_a["sale_id"], None, MANAGER)
        assert (ret["return"]["points_reversed"], ret["return"]["points_debt"]) == (320, 180)
        zhang_id = box.member_by_phone(ZHANG).id

        def till_points() -> int:
            with box.bound():
                return member_svc.summary(box.till, member_svc.resolve(zhang_id))["points"]

        assert till_points() == -180
        box.start_agent()
        wait_until(lambda: box.pending() == 0, 30, "the store drained")
        m = Member.get_by_id(zhang_id)
        assert (m.points, ledger_sums(zhang_id)["points"]) == (-180, -180)
        assert HqException.select().where(HqException.member_id == zhang_id).count() == 0
        # what HQ pushed down keeps the till's figure
        caught_up(box)
        assert till_points() == -180
        assert box.ledger_matches_balances() == []
        # the next earnings pay the debt first, at the till and at HQ alike
        again = box.sell(zhang, two_rice, [{"kind": "cash", "amount": 20000}])
        assert again["points_earned"] == 320
        assert till_points() == 140
        wait_until(lambda: box.pending() == 0, 30, "the store drained again")
        m = Member.get_by_id(zhang_id)
        assert (m.points, ledger_sums(zhang_id)["points"]) == (140, 140)
        lots = PointsLot.select().where(PointsLot.member_id == zhang_id)
        assert sum(lot.remaining for lot in lots) == 140
        caught_up(box)
        assert till_points() == 140
        assert box.ledger_matches_balances() == []
    finally:
        box.close()


def test_what_a_real_till_sends_passes_every_check(tmp_path, mosquitto, worker, hq_db):
    """Top-up, a sale paid with stored value, points and cash, two partial returns and a
    final one, a walk-in sale: HQ applies every item as the till wrote it (no refusal,
    no exception) and every figure agrees with the till's."""
    box = StoreBox(tmp_path / "a", f"R{uuid7()[-6:]}", mosquitto, authorizer=ApprovedOnline())
    try:
        box.till.clock = _friday_clock()
        box.load_demo(members=2)
        zhang = {"card_no": "C0001"}
        box.top_up(zhang, 50000)  # and the rules' 10,000 bonus
        box.sell(zhang, [{"sku": "P0010", "qty": 2}], [{"kind": "cash", "amount": 20000}])
        basket = [
            {"sku": "P0003", "qty": 3},
            {"sku": "P0006", "qty": 2},  # no member discount
            {"sku": "P0008", "qty": 1},  # earns no points
        ]
        paid = [
            {"kind": "stored_value", "amount": 10000},
            {"kind": "points", "amount": 150},
            {"kind": "cash", "amount": 50000},
        ]
        sale = box.sell(zhang, basket, paid, password="123456")
        box.sell(None, [{"sku": "P0001", "qty": 5}], [{"kind": "cash", "amount": 1000}])
        with box.bound():
            staff = box.staff()
            for lines in ([(1, 1)], [(1, 1), (2, 1)], None):
                sales_svc.return_sale(box.till, staff, sale["sale_id"], lines, MANAGER)
        zhang_id = box.member_by_phone(ZHANG).id
        box.start_agent()
        wait_until(lambda: box.pending() == 0, 30, "the store drained")
        rejected = box.query(
            lambda: [
                (o.seq, o.kind, o.reject_reason)
                for o in Outbox.select().where(Outbox.reject_code.is_null(False))
            ]
        )
        assert rejected == []
        assert HqException.select().where(HqException.store == box.code).count() == 0
        assert Return.select().where(Return.sale_id == sale["sale_id"]).count() == 3
        m = Member.get_by_id(zhang_id)
        caught_up(box)
        with box.bound():
            shown = member_svc.summary(box.till, member_svc.resolve(zhang_id))
        assert balances(zhang_id) == (
            shown["stored_value"]["principal"],
            shown["stored_value"]["bonus"],
            shown["points"],
        )
        assert (m.sv_principal + m.sv_bonus, m.points) == (60000, 320)
        assert box.ledger_matches_balances() == []
    finally:
        box.close()


def test_money_refusals_cost_the_batch_no_second_attempt(hq_db, store_code, monkeypatch):
    """A money check refuses before the item writes anything, so the ingest rejects it in
    place: a batch full of attacks is still one transaction, not one more per refusal."""
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    attempts = []
    real = hq_ingest._transaction

    def counted(db, work):  # noqa: ANN001, ANN202
        attempts.append(1)
        return real(db, work)

    monkeypatch.setattr(hq_ingest, "_transaction", counted)
    attacks = [items.sale(mid, 0, points_earned=300) for _ in range(5)]
    attacks += [items.topup(mid, 10000, 5000) for _ in range(5)]
    ack = ingest(store_code, [*attacks, items.sale(mid, 1000)])
    assert [r.seq for r in ack.rejected] == [a["seq"] for a in attacks]
    assert len(attempts) == 1
    assert balances(mid) == (50000, 10000, 110)
