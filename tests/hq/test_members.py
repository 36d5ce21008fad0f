"""Merges, authorization, overdrafts and re-pricing, driven through the broker."""

from __future__ import annotations

from core import protocol as p
from core.ids import uuid7
from hq.ledger import ledger_sums
from hq.models import (
    Authorization,
    Card,
    HqException,
    LedgerEntry,
    Member,
    Merge,
    PointsLot,
    Sale,
)
from tests.hq.edge_sim import EdgeSim, Items, wait_until


def assert_balanced(member_id: str) -> None:
    m = Member.get_by_id(member_id)
    sums = ledger_sums(member_id)
    assert (m.sv_principal, m.sv_bonus, m.points) == (
        sums["principal"],
        sums["bonus"],
        sums["points"],
    )
    lots = sum(lot.remaining for lot in PointsLot.select().where(PointsLot.member_id == member_id))
    assert lots == max(0, m.points)


def test_same_phone_in_two_stores_is_merged(worker, mosquitto, store_code):
    s1, s2 = store_code, store_code + "b"
    e1, e2 = EdgeSim(mosquitto, s1), EdgeSim(mosquitto, s2)
    try:
        i1, i2 = Items(s1), Items(s2)
        early, late = uuid7(), uuid7()
        e1.send(
            [
                i1.registration(
                    early, "139 0000 0001", at="2026-11-23T09:00:00+08:00", card_no="A1"
                ),
                i1.topup(early, 10000),
                i1.sale(early, 5000, points_earned=50),
            ]
        )
        e1.wait_acked(3)
        e2.send(
            [
                i2.registration(
                    late,
                    "13900000001",
                    at="2026-11-23T09:30:00+08:00",
                    card_no="B1",
                    staff_code="E77",
                ),
                i2.topup(late, 50000),  # the rules give 10,000 bonus
                i2.sale(late, 2000, points_earned=20),
            ]
        )
        e2.wait_acked(3)
        survivor, merged = Member.get_by_id(early), Member.get_by_id(late)
        assert merged.status == "merged" and merged.merged_into == early
        assert (survivor.sv_principal, survivor.sv_bonus, survivor.points) == (60000, 10000, 70)
        assert survivor.through == {s1: 3, s2: 3}
        assert {c.card_no for c in Card.select().where(Card.member_id == early)} == {"A1", "B1"}
        assert LedgerEntry.select().where(LedgerEntry.member_id == late).count() == 0
        assert_balanced(early)
        merge = Merge.get(Merge.from_member == late)
        assert (merge.to_member, merge.store, merge.staff, merge.reason) == (
            early,
            s2,
            "E77",
            "same_phone",
        )
        # the merge goes down to every store
        for edge in (e1, e2):
            wait_until(
                lambda edge=edge: any(
                    c["entity"] == "merge" and c["data"]["to_member_id"] == early
                    for page in edge.live
                    for c in page["changes"]
                ),
                10,
                "merge pushed",
            )
        # later items naming the old id land on the survivor
        e2.send([i2.topup(late, 1000)])
        e2.wait_acked(4)
        assert Member.get_by_id(early).sv_principal == 61000
        assert_balanced(early)
    finally:
        e1.close()
        e2.close()


def test_registration_later_but_earlier_timestamp_survives(worker, edge, store_code):
    items = Items(store_code)
    first_seen, registered_earlier = uuid7(), uuid7()
    edge.send(
        [
            items.registration(first_seen, "13700000001", at="2026-11-23T12:00:00+08:00"),
            items.registration(registered_earlier, "13700000001", at="2026-11-23T08:00:00+08:00"),
        ]
    )
    edge.wait_acked(2)
    assert Member.get_by_id(first_seen).merged_into == registered_earlier


def test_authorization_is_idempotent_and_settled_by_the_sale(worker, edge, store_code):
    items = Items(store_code)
    mid = uuid7()
    # 50,000 paid in, 10,000 given by the rules
    edge.send([items.registration(mid, "13600000001"), items.topup(mid, 50000)])
    edge.wait_acked(2)
    sale_id = uuid7()
    req = p.AuthRequest(store_code, sale_id, mid, "hold", 54000, 0)
    first = edge.authorize(req)
    assert first["status"] == "approved"
    assert first["stored_value_split"] == {"principal": 45000, "bonus": 9000}
    assert first["balances"]["stored_value"] == {"principal": 5000, "bonus": 1000}
    retry = edge.authorize(req)
    assert retry == first  # same answer, nothing held twice
    assert Authorization.select().where(Authorization.sale_id == sale_id).count() == 1
    other = edge.authorize(p.AuthRequest(store_code, uuid7(), mid, "hold", 6001, 0))
    assert (other["status"], other["code"]) == ("declined", "insufficient")
    conflict = edge.authorize(p.AuthRequest(store_code, sale_id, mid, "hold", 100, 0))
    assert conflict["code"] == "conflict"
    # the sale settles the hold: spent once
    edge.send(
        [
            items.sale(
                mid,
                54000,
                stored_value=(45000, 9000),
                sale_id=sale_id,
                authorization_id=first["authorization_id"],
            )
        ]
    )
    edge.wait_acked(3)
    m = Member.get_by_id(mid)
    assert (m.sv_principal, m.sv_bonus) == (5000, 1000)
    assert Authorization.get(Authorization.sale_id == sale_id).status == "settled"
    assert HqException.select().where(HqException.member_id == mid).count() == 0
    # the settled hold no longer reduces what is available
    again = edge.authorize(p.AuthRequest(store_code, uuid7(), mid, "hold", 6000, 0))
    assert again["status"] == "approved"
    released = edge.authorize(p.AuthRequest(store_code, again["sale_id"], mid, "release", 6000, 0))
    assert released["status"] == "released"
    assert_balanced(mid)


def test_authorization_unknown_member_declined(worker, edge, store_code):
    answer = edge.authorize(p.AuthRequest(store_code, uuid7(), uuid7(), "hold", 100, 0))
    assert (answer["status"], answer["code"]) == ("declined", "unknown_member")


def test_offline_overdraft_is_an_exception_recovered_later(worker, mosquitto, store_code):
    s1, s2 = store_code, store_code + "x"
    e1, e2 = EdgeSim(mosquitto, s1), EdgeSim(mosquitto, s2)
    try:
        i1, i2 = Items(s1), Items(s2)
        mid = uuid7()
        e1.send([i1.registration(mid, "13500000001"), i1.topup(mid, 5000)])
        e1.wait_acked(2)
        # both stores spend offline against the cached 5000: 4000 + 3000
        e2.send([i2.sale(mid, 4000, stored_value=(4000, 0), offline=True)])
        e2.wait_acked(1)
        e1.send([i1.sale(mid, 3000, stored_value=(3000, 0), offline=True)])
        e1.wait_acked(3)
        m = Member.get_by_id(mid)
        assert m.sv_principal == -2000
        over = HqException.get((HqException.member_id == mid) & (HqException.kind == "overdraft"))
        assert (over.balance, over.amount, over.store, over.seq, over.status) == (
            "stored_value",
            2000,
            s1,
            3,
            "open",
        )
        assert_balanced(mid)
        e1.send([i1.topup(mid, 1500)])
        e1.wait_acked(4)
        over = HqException.get_by_id(over.id)
        assert (over.recovered, over.status) == (1500, "open")
        e1.send([i1.topup(mid, 1000)])
        e1.wait_acked(5)
        over = HqException.get_by_id(over.id)
        assert (over.recovered, over.status) == (2000, "closed")
        assert Member.get_by_id(mid).sv_principal == 500
        assert_balanced(mid)
    finally:
        e1.close()
        e2.close()


def test_points_overdraft_paid_by_later_earnings(worker, edge, store_code):
    items = Items(store_code)
    mid = uuid7()
    edge.send(
        [
            items.registration(mid, "13500000002"),
            items.sale(mid, 10000, points_earned=100),
            items.sale(mid, 150, points_used=150, offline=True),  # all points: earns none
        ]
    )
    edge.wait_acked(3)
    assert Member.get_by_id(mid).points == -50
    over = HqException.get((HqException.member_id == mid) & (HqException.balance == "points"))
    assert over.amount == 50
    edge.send([items.sale(mid, 8000, points_earned=80)])
    edge.wait_acked(4)
    assert Member.get_by_id(mid).points == 30
    assert HqException.get_by_id(over.id).status == "closed"
    assert_balanced(mid)


def test_reprice_mismatch_is_refused(worker, edge, store_code):
    """HQ posts nothing a re-pricing does not confirm (it used to apply the sale and open
    a reprice_mismatch exception: issue 9, defect 4)."""
    items = Items(store_code)
    honest = items.sale(None, 1234)
    wrong = items.sale(None, 1234, tamper_total=-34)
    edge.send([honest, wrong])
    ack = edge.wait_acked(2)
    assert [(r["seq"], r["code"]) for r in ack["rejected"]] == [(2, "apply_failed")]
    assert "total: till 1200, HQ 1234" in ack["rejected"][0]["reason"]
    assert Sale.select().where(Sale.store == store_code).count() == 1
    assert HqException.select().where(HqException.store == store_code).count() == 0


def test_coupon_held_by_authorization_and_used_by_the_sale(worker, hq_db, edge, store_code):
    import datetime as dt

    from hq.models import Coupon, utcnow
    from hq.services import issue_coupon

    items = Items(store_code)
    mid = uuid7()
    edge.send([items.registration(mid, "13600000002")])
    edge.wait_acked(1)
    issue_coupon(hq_db, f"CP-{store_code}", 1000, mid, dt.date(2099, 1, 1), utcnow())
    sale_id = uuid7()
    req = p.AuthRequest(store_code, sale_id, mid, "hold", 0, 0, (f"CP-{store_code}",))
    assert edge.authorize(req)["status"] == "approved"
    assert Coupon.get_by_id(f"CP-{store_code}").status == "held"
    other = edge.authorize(
        p.AuthRequest(store_code, uuid7(), mid, "hold", 0, 0, (f"CP-{store_code}",))
    )
    assert other["code"] == "coupon_unusable"
    edge.send([items.sale(mid, 5000, sale_id=sale_id)])
    edge.wait_acked(2)
    assert Coupon.get_by_id(f"CP-{store_code}").status == "used"
