"""An erasure from HQ applied at a store, without a network: the person's data leaves the
member row, the acknowledged outbox copies and the receipts; the money stays."""

from __future__ import annotations

import json

import pytest

from core.errors import NotFound
from core.protocol import Change, assemble_snapshot, snapshot_chunks
from core.receipt import mask_name
from edge.models import Ledger, Member, Outbox, PointsLot, Sale, SaleReturn, TopUp
from edge.services import members as member_svc
from edge.services import sales
from edge.services.staff import sign_in
from edge.sync.apply import load_snapshot
from tests.sync import test_apply as base
from tests.sync.helpers import ledger_mismatches
from tests.sync.test_apply import NOW, apply, member_data

ZHANG = "13800000001"
till, demo = base.till, base.demo  # the same fixtures: a store S1 with demo data


def trade_and_ack(till) -> Member:
    """张三 (registered here, with a password) tops up, buys and returns; HQ acks it all."""
    zhang = member_svc.by_phone(till, ZHANG)
    _, staff = sign_in(till, "1001", "1234")
    sales.top_up(till, staff, {"card_no": "C0001"}, 10000)
    sale = sales.checkout(
        till,
        staff,
        sales.CheckoutRequest.from_request(
            {
                "member": {"card_no": "C0001"},
                "lines": [{"sku": "P0004"}, {"sku": "P0002"}],
                "tenders": [
                    {"kind": "stored_value", "amount": 2790},
                    {"kind": "cash", "amount": 100000},
                ],
                "member_password": "123456",
            }
        ),
    )
    _, manager = sign_in(till, "9001", "9999")
    sales.return_sale(till, manager, sale["sale_id"], [(2, 1)])
    Outbox.update(acked=True).execute()
    return Member.get_by_id(zhang.id)


def erased(member: Member, **over) -> dict:
    top = Outbox.select().order_by(Outbox.seq.desc()).first().seq
    return member_data(
        member.id,
        name="",
        phone=None,
        gender="",
        password_hash=None,
        status="erased",
        registered_store="S1",
        stored_value={"principal": member.sv_principal, "bonus": member.sv_bonus},
        points_lots=[
            {
                "lot_id": lot.lot_id,
                "earned_on": lot.earned_on,
                "expires_on": lot.expires_on,
                "remaining": lot.remaining,
            }
            for lot in PointsLot.select().where(PointsLot.member_id == member.id)
        ],
        points_debt=member.points_debt,
        through={"S1": top},
        **over,
    )


def assert_no_trace(till, member_id: str, phone: str = ZHANG, name: str = "张三") -> None:
    """Nothing of the person is left at this store (the bound database): not on the
    member row, in the outbox, or on a receipt."""
    m = Member.get_by_id(member_id)
    assert (m.name, m.name_pinyin, m.phone_hash, m.phone_enc, m.phone_tail) == (
        "",
        "",
        None,
        None,
        "",
    )
    assert (m.password_hash, m.gender, m.birthday, m.status) == (None, "", None, "erased")
    with pytest.raises(NotFound):
        member_svc.by_phone(till, phone)
    assert member_svc.search(till, name) == []
    for row in Outbox.select():
        assert phone not in row.payload and name not in row.payload, row.payload
    for model in (Sale, SaleReturn, TopUp):
        for row in model.select():
            text = json.dumps(row.receipt, ensure_ascii=False)
            assert mask_name(name) not in text and f"*{phone[-4:]}" not in text, (model, text)


def test_an_erase_record_clears_the_person_and_keeps_the_money(demo):
    till = demo
    zhang = trade_and_ack(till)
    li = member_svc.by_phone(till, "13800000002")
    receipts = [s.receipt for s in Sale.select()]
    assert receipts and "张*" in json.dumps(receipts, ensure_ascii=False)
    ledger_rows = Ledger.select().count()
    assert apply(till, Change(7, "member", zhang.id, "erase", erased(zhang)), start=1) == (1, 7)
    assert_no_trace(till, zhang.id)
    after = Member.get_by_id(zhang.id)
    assert (after.sv_principal, after.sv_bonus) == (zhang.sv_principal, zhang.sv_bonus)
    assert Ledger.select().count() == ledger_rows  # nothing moved
    assert ledger_mismatches("S1", till.now().date()) == []
    assert Sale.select().count() == 1 and TopUp.select().count() == 1
    # the other member is untouched
    assert member_svc.by_phone(till, "13800000002").id == li.id
    assert '"13800000002"' not in "".join(o.payload for o in Outbox.select())  # scrubbed at ack
    assert "李四" in "".join(o.payload for o in Outbox.select())


def test_an_item_hq_has_not_acknowledged_keeps_what_it_carries(demo):
    till = demo
    zhang = member_svc.by_phone(till, ZHANG)
    # nothing acked: HQ has not seen this registration, so an erase of the id leaves it
    apply(till, Change(3, "member", zhang.id, "erase", erased(Member.get_by_id(zhang.id))), start=1)
    reg = Outbox.get((Outbox.kind == "registration") & Outbox.payload.contains(zhang.id))
    assert json.loads(reg.payload)["body"]["phone"] == ZHANG
    assert Member.get_by_id(zhang.id).name == ""


def test_a_snapshot_into_a_store_that_knew_the_member_erases_it_too(demo, tmp_path):
    till = demo
    zhang = trade_and_ack(till)
    record = {"seq": 40, "entity": "member", "key": zhang.id, "op": "upsert", "data": erased(zhang)}
    chunks = snapshot_chunks([record], 40, "snap-erase")
    assert load_snapshot(till.db, till.store, till.keys, assemble_snapshot(chunks), 40, NOW) == 1
    assert_no_trace(till, zhang.id)
    assert ledger_mismatches("S1", till.now().date()) == []
