"""No item can block a store: what HQ refuses is acknowledged as refused, the store
moves on and shows the refusal; what is too large to send never enters the outbox."""

from __future__ import annotations

import pytest

from core import protocol as p
from core.errors import ValidationError
from edge.api import create_app
from edge.models import Member, Outbox
from edge.services import members as member_svc
from edge.services import staff as staff_svc
from edge.services.outbox import enqueue
from hq.models import DeadLetter
from hq.models import Sale as HqSale
from hq.models import Store as HqStore
from tests.sync.conftest import new_code, start_worker
from tests.sync.helpers import StoreBox, wait_until


def _swell_outbox_row(store: StoreBox, seq: int, card_no: str) -> None:
    """An outbox row too large to send, as a till wrote it before it checked sizes."""
    store.query(
        lambda: store.till.db.execute_sql(
            "UPDATE outbox SET payload = json_set(payload, '$.body.card_no', ?) WHERE seq = ?",
            (card_no, seq),
        )
    )


def test_an_oversized_item_is_refused_and_later_sales_are_acked(
    tmp_path, mosquitto, hq_db_url, stores
):
    worker = start_worker(hq_db_url, mosquitto)
    try:
        shop = StoreBox(tmp_path / "a", new_code("R"), mosquitto)
        stores.append(shop)
        shop.load_staff_and_products()
        shop.register("王五", "13900000077", card_no="C7701")
        big_seq = shop.outbox_count()
        _swell_outbox_row(shop, big_seq, "9" * 300_000)
        for _ in range(3):
            shop.sell(None, [{"sku": "P0001", "qty": 1}])
        total = shop.outbox_count()
        shop.start_agent()
        # and the rules version the store takes once online (rules_status)
        wait_until(
            lambda: shop.pending() == 0 and shop.outbox_count() == total + 1,
            40,
            "every item settled at the store",
        )
        assert HqStore.get_by_id(shop.code).acked_through == total + 1
        assert HqSale.select().where(HqSale.store == shop.code).count() == 3
        letter = DeadLetter.get((DeadLetter.store == shop.code) & (DeadLetter.seq == big_seq))
        assert letter.code == "oversized"
        row = shop.query(lambda: Outbox.get_by_id(big_seq))
        assert row.reject_code == "oversized" and str(p.MAX_PAYLOAD_BYTES) in row.reject_reason
        # the store's staff see it: GET /api/v1/status lists the refusal
        client = create_app(shop.till).test_client()
        with shop.bound():
            token, _ = staff_svc.sign_in(shop.till, "1001", "1234")
            headers = {"Authorization": f"Bearer {token}"}
            refused = client.get("/api/v1/status", headers=headers).get_json()["outbox"]["refused"]
        assert refused["count"] == 1
        assert refused["latest"][0]["seq"] == big_seq
        assert refused["latest"][0]["code"] == "oversized"
        assert refused["latest"][0]["kind"] == "registration"
    finally:
        worker.stop()


def test_an_item_too_large_to_send_is_refused_before_the_outbox(tmp_path, mosquitto, stores):
    shop = StoreBox(tmp_path / "a", new_code("R"), mosquitto)
    stores.append(shop)
    shop.load_staff_and_products()
    before = shop.outbox_count()
    with shop.bound(), pytest.raises(ValidationError) as caught:
        with shop.till.db.atomic():
            enqueue(shop.till, "registration", {"note": "ok", "card_no": "8" * 300_000}, "x", 1)
    assert caught.value.field == "card_no"
    assert "card_no" in caught.value.message and str(p.MAX_ITEM_BYTES) in caught.value.message
    assert shop.outbox_count() == before
    # through the till API: a 4xx naming the field, nothing committed
    client = create_app(shop.till).test_client()
    with shop.bound():
        token = client.post("/api/v1/session", json={"staff_code": "1001", "pin": "1234"})
        headers = {"Authorization": f"Bearer {token.get_json()['token']}"}
        answer = client.post(
            "/api/v1/members",
            json={"name": "赵六", "phone": "13900000078", "card_no": "7" * 300_000},
            headers=headers,
        )
        assert 400 <= answer.status_code < 500
        assert answer.get_json()["field"] == "card_no"
        assert Member.select().count() == 0
        assert member_svc.member_count() == 0
    assert shop.outbox_count() == before


def test_an_item_the_till_accepts_always_fits_a_batch_of_its_own():
    from edge.sync.agent import build_batch

    item = p.UpItem(1, "S" * 32, p.MAX_SEQ, "0" * 36, "registration", "t", 1, {"pad": ""})
    text = p.encode_json(item.to_dict()).decode()
    text = text.replace('"pad":""', '"pad":"' + "x" * (p.MAX_ITEM_BYTES - len(text)) + '"')
    assert len(text.encode()) == p.MAX_ITEM_BYTES
    [(_, _, payload)] = build_batch("S" * 32, p.MAX_EPOCH, [(p.MAX_SEQ, text)])
    assert len(payload) <= p.MAX_PAYLOAD_BYTES
