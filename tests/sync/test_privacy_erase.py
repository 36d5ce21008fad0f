"""Erasure end to end, through a real broker: a member registered at store A trades at A
and B; HQ erases them; every store, and a store that joins later by snapshot, shows no
name or phone for them, and every balance still equals its ledger."""

from __future__ import annotations

import json

from click.testing import CliRunner

from edge.models import Sale as EdgeSale
from hq.cli import main as hq_main
from hq.ledger import ledger_sums
from hq.models import Member as HqMember
from hq.models import Sale as HqSale
from hq.models import bind as hq_bind
from tests.sync.conftest import new_code, start_worker
from tests.sync.helpers import StoreBox, wait_until
from tests.sync.test_privacy_apply import assert_no_trace

PHONE = "13957310299"


def no_person_at(store: StoreBox, member_id: str) -> None:
    store.query(lambda: assert_no_trace(store.till, member_id, PHONE, "孙八"))


def test_erase_reaches_every_store_and_keeps_the_money(tmp_path, mosquitto, hq_db_url, stores):
    worker = start_worker(hq_db_url, mosquitto)
    try:
        a = StoreBox(tmp_path / "a", new_code("A"), mosquitto)
        b = StoreBox(tmp_path / "b", new_code("B"), mosquitto)
        stores += [a, b]
        a.load_demo(members=2)
        b.load_staff_and_products()
        member_id = a.register("孙八", PHONE, card_no="S8001")
        a.top_up({"card_no": "S8001"}, 20000)
        a.sell({"card_no": "S8001"}, [{"sku": "P0002", "qty": 2}])
        a.start_agent()
        b.start_agent()
        wait_until(lambda: a.pending() == 0, 30, "store A drained")
        wait_until(lambda: b.member_by_phone(PHONE), 30, "the member at store B")
        b.sell({"card_no": "S8001"}, [{"sku": "P0001"}])
        b.top_up({"card_no": "S8001"}, 5000)
        wait_until(lambda: b.pending() == 0, 30, "store B drained")
        hq_bind(worker.db, create=False)
        sales_before = HqSale.select().where(HqSale.member_id == member_id).count()
        assert sales_before == 2
        receipts = a.query(lambda: [s.receipt for s in EdgeSale.select()])
        assert "孙*" in json.dumps(receipts, ensure_ascii=False)  # there was something to scrub

        result = CliRunner().invoke(
            hq_main,
            [
                "--database-url",
                hq_db_url,
                *mosquitto.cli_args("hq"),
                "erase-member",
                member_id,
                "--reason",
                "the member asked",
                "--yes",
            ],
        )
        assert result.exit_code == 0, result.output
        for store in (a, b):
            wait_until(
                lambda s=store: s.member(member_id).status == "erased",
                30,
                f"erased at {store.code}",
            )
            no_person_at(store, member_id)

        hq_bind(worker.db, create=False)
        m = HqMember.get_by_id(member_id)
        assert (m.name, m.phone, m.status) == ("", None, "erased")
        sums = ledger_sums(member_id)
        assert (m.sv_principal, m.sv_bonus, m.points) == (
            sums["principal"],
            sums["bonus"],
            sums["points"],
        )
        assert HqSale.select().where(HqSale.member_id == member_id).count() == sales_before
        for store in (a, b):
            at = store.member(member_id)
            assert (at.sv_principal, at.sv_bonus) == (m.sv_principal, m.sv_bonus), store.code
            assert store.ledger_matches_balances() == []

        # a store that joins now loads the erased member by snapshot: money, no person
        c = StoreBox(tmp_path / "c", new_code("C"), mosquitto)
        stores.append(c)
        c.load_staff_and_products()
        c.start_agent()
        wait_until(lambda: c.member(member_id), 30, "snapshot loaded at C")
        at_c = c.member(member_id)
        assert (at_c.name, at_c.phone_tail, at_c.phone_hash, at_c.status) == (
            "",
            "",
            None,
            "erased",
        )
        assert (at_c.sv_principal, at_c.sv_bonus) == (m.sv_principal, m.sv_bonus)
        assert c.ledger_matches_balances() == []
        # 张三, registered at A too, is untouched everywhere
        assert c.member_by_phone("13800000001") is not None
    finally:
        worker.stop()
