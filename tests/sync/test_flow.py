"""The whole path, store to HQ and back, with real processes and a real broker."""

from __future__ import annotations

import pytest

from core.errors import Forbidden
from edge.models import Member as EdgeMember
from hq.ledger import ledger_sums
from hq.models import Member as HqMember
from hq.models import Sale as HqSale
from hq.models import Store as HqStore
from tests.sync.conftest import new_code, start_worker
from tests.sync.helpers import StoreBox, wait_until

ZHANG = "13800000001"


def test_sales_reach_hq_once_and_members_reach_the_other_store(
    tmp_path, mosquitto, hq_db_url, stores
):
    worker = start_worker(hq_db_url, mosquitto)
    try:
        a = StoreBox(tmp_path / "a", new_code("A"), mosquitto)
        b = StoreBox(tmp_path / "b", new_code("B"), mosquitto)
        stores += [a, b]
        a.load_demo(members=2)
        b.load_staff_and_products()
        a.top_up({"card_no": "C0001"}, 10000)
        for _ in range(5):
            a.sell({"card_no": "C0001"}, [{"sku": "P0002", "qty": 1}])
        a.sell(None, [{"sku": "P0001", "qty": 2}])
        total = a.outbox_count()
        a.start_agent()
        b.start_agent()
        # what was queued, and the rules version the store takes once online (rules_status)
        wait_until(
            lambda: a.pending() == 0 and a.outbox_count() == total + 1, 30, "store A drained"
        )
        assert HqStore.get_by_id(a.code).acked_through == total + 1
        assert HqSale.select().where(HqSale.store == a.code).count() == 6
        zhang_id = a.member_by_phone(ZHANG).id
        m = HqMember.get_by_id(zhang_id)
        sums = ledger_sums(zhang_id)
        assert (m.sv_principal, m.points) == (sums["principal"], sums["points"])
        # store B learns 张三 with HQ's balances
        seen = wait_until(lambda: b.member_by_phone(ZHANG), 30, "张三 at store B")
        wait_until(lambda: b.member(zhang_id).sv_principal == m.sv_principal, 15, "balance at B")
        at_b = b.member(zhang_id)
        assert (at_b.sv_principal, at_b.sv_bonus) == (m.sv_principal, m.sv_bonus)
        assert seen.id == zhang_id
        # 张三 set his password at A; at B the same password pays with stored value
        sv_tender = [{"kind": "stored_value", "amount": 1000}, {"kind": "cash", "amount": 9000}]
        with pytest.raises(Forbidden, match="会员密码错误"):
            b.sell({"card_no": "C0001"}, [{"sku": "P0002"}], sv_tender, password="654321")
        b.sell({"card_no": "C0001"}, [{"sku": "P0002"}], sv_tender, password="123456")
        after = b.member(zhang_id)
        assert after.sv_principal + after.sv_bonus == at_b.sv_principal + at_b.sv_bonus - 1000
        wait_until(lambda: b.pending() == 0, 30, "store B drained")
        m = HqMember.get_by_id(zhang_id)
        assert m.password_hash and m.password_hash.startswith("scrypt$")
        # and store A's cached balance is unchanged by HQ's echo of its own items
        at_a = a.member(zhang_id)
        assert (at_a.sv_principal, at_a.sv_bonus) == (m.sv_principal, m.sv_bonus)
        assert a.ledger_matches_balances() == []
        assert b.ledger_matches_balances() == []
    finally:
        worker.stop()


def test_a_new_store_loads_a_snapshot_then_follows_live_changes(tmp_path, mosquitto, stores):
    url = f"sqlite:///{tmp_path / 'hq.sqlite3'}"
    worker = start_worker(url, mosquitto)
    try:
        a = StoreBox(tmp_path / "a", new_code("A"), mosquitto)
        stores.append(a)
        a.load_demo(members=20)
        a.start_agent()
        wait_until(lambda: a.pending() == 0, 30, "A drained")
        c = StoreBox(tmp_path / "c", new_code("C"), mosquitto)
        stores.append(c)
        c.load_staff_and_products()
        c.start_agent()
        wait_until(lambda: c.member_by_phone(ZHANG), 30, "snapshot loaded at C")
        assert "loaded snapshot" in c.agent_log()
        assert c.query(lambda: EdgeMember.select().count()) == 20
        # the snapshot carries the password hash: 张三 pays with stored value at C
        a.top_up({"card_no": "C0001"}, 3000)
        zhang = a.member_by_phone(ZHANG).id
        wait_until(lambda: c.member(zhang).sv_principal >= 3000, 30, "top-up at C")
        sv_tender = [{"kind": "stored_value", "amount": 1000}, {"kind": "cash", "amount": 9000}]
        c.sell({"card_no": "C0001"}, [{"sku": "P0002"}], sv_tender, password="123456")
        # then live: a top-up at A reaches C through the change log
        a.top_up({"card_no": "C0001"}, 5000)
        wait_until(lambda: c.member(zhang).sv_principal >= 5000, 30, "live change at C")
        assert c.ledger_matches_balances() == []
    finally:
        worker.stop()
