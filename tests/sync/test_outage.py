"""Invariants 1 and 3 through a broker outage: two stores keep trading, then catch up."""

from __future__ import annotations

import time

from edge.models import Member as EdgeMember
from hq.ledger import ledger_sums
from hq.models import HqException, ProcessedItem
from hq.models import Member as HqMember
from hq.models import Sale as HqSale
from hq.models import Store as HqStore
from tests.sync.conftest import new_code, start_worker
from tests.sync.helpers import StoreBox, wait_until

ZHANG = "13800000001"
NEW_PHONE = "13900000099"
POINTS_LIMIT = 300  # [offline.points] daily_limit in tests/sync/helpers.store_toml
POINTS_TENDER = [{"kind": "points", "amount": 250}, {"kind": "cash", "amount": 10000}]


def hq_matches_ledger() -> list[str]:
    bad = []
    for m in HqMember.select():
        sums = ledger_sums(m.id)
        if (m.sv_principal, m.sv_bonus, m.points) != (
            sums["principal"],
            sums["bonus"],
            sums["points"],
        ):
            bad.append(f"{m.id}: {m.sv_principal}/{m.sv_bonus}/{m.points} ledger {sums}")
    return bad


def test_two_stores_trade_through_a_broker_outage(tmp_path, own_mosquitto, hq_db_url, stores):
    worker = start_worker(hq_db_url, own_mosquitto)
    try:
        a = StoreBox(tmp_path / "a", new_code("A"), own_mosquitto)
        b = StoreBox(tmp_path / "b", new_code("B"), own_mosquitto)
        stores += [a, b]
        a.load_demo(members=2)
        b.load_staff_and_products()
        zhang = a.member_by_phone(ZHANG).id
        a.top_up({"card_no": "C0001"}, 10000)
        a.sell({"card_no": "C0001"}, [{"sku": "P0003", "qty": 3}])  # earns points
        a.start_agent()
        b.start_agent()
        wait_until(lambda: a.pending() == 0, 30, "A drained before the outage")
        hq_points = HqMember.get_by_id(zhang).points
        assert hq_points > POINTS_LIMIT
        wait_until(
            lambda: (m := b.member(zhang)) is not None and m.sv_principal > 0,
            30,
            "张三 with balances at B",
        )

        own_mosquitto.stop()
        sales = {a.code: 0, b.code: 0}
        # the same member at both stores: points offline at each (floor_limit), SV at A
        a.sell({"card_no": "C0001"}, [{"sku": "P0003"}], POINTS_TENDER)
        b.sell({"member_id": zhang}, [{"sku": "P0003"}], POINTS_TENDER)
        a.sell(
            {"card_no": "C0001"},
            [{"sku": "P0004"}],
            [{"kind": "stored_value", "amount": 2790}],
            password="123456",
        )
        sales[a.code] += 2
        sales[b.code] += 1
        # the same new phone registered at both stores, A first
        old_a = a.register("王五", NEW_PHONE)
        time.sleep(1.1)  # registered_at has second resolution: A is the earlier one
        old_b = b.register("王五", NEW_PHONE)
        for store, mid in ((a, old_a), (b, old_b)):
            store.sell({"member_id": mid}, [{"sku": "P0002", "qty": 2}])
            store.sell(None, [{"sku": "P0005"}])
            sales[store.code] += 2
        # both sold with nobody to tell
        assert a.pending() > 0 and b.pending() > 0
        own_mosquitto.start()

        wait_until(lambda: a.pending() == 0 and b.pending() == 0, 60, "both stores drained")
        for store in (a, b):
            total = store.outbox_count()
            assert HqStore.get_by_id(store.code).acked_through == total
            assert ProcessedItem.select().where(ProcessedItem.store == store.code).count() == total
        assert HqSale.select().where(HqSale.store == a.code).count() == sales[a.code] + 1
        assert HqSale.select().where(HqSale.store == b.code).count() == sales[b.code]
        assert hq_matches_ledger() == []

        live = list(
            HqMember.select().where((HqMember.phone == NEW_PHONE) & (HqMember.status == "active"))
        )
        assert [m.id for m in live] == [old_a]
        merged = HqMember.get_by_id(old_b)
        assert (merged.status, merged.merged_into) == ("merged", old_a)

        short = sum(
            e.amount
            for e in HqException.select().where(
                (HqException.kind == "overdraft") & (HqException.member_id == zhang)
            )
        )
        assert short <= POINTS_LIMIT * 2  # the bound: L per store that spent offline

        # every store maps the merged id to the survivor and agrees with HQ's balances
        for store in (a, b):
            wait_until(
                lambda s=store: (m := s.member(old_b)) is not None and m.id == old_a,
                30,
                f"{store.code} maps the merged member",
            )
        hq_zhang = HqMember.get_by_id(zhang)
        for store in (a, b):
            wait_until(
                lambda s=store: (
                    (m := s.member(zhang)).sv_principal == hq_zhang.sv_principal
                    and m.sv_bonus == hq_zhang.sv_bonus
                ),
                30,
                f"{store.code} has HQ's stored value",
            )
            assert store.ledger_matches_balances() == []
        survivor_b = b.member(old_a)
        assert survivor_b.status == "active"
        assert b.query(lambda: EdgeMember.get_by_id(old_b).status) == "merged"
    finally:
        worker.stop()
