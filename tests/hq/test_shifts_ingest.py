"""A till's shift and day closes reach HQ (hq/shifts.py) through the real ingest
(``ingest_batch``, on SQLite and PostgreSQL): the items a real till wrote to its outbox
are kept; figures that do not add up are dead-lettered with the reason while the rest of
the batch is applied; figures that add up but differ from the sales HQ holds are kept and
flagged as an exception."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from core import protocol as p
from edge.api import create_app
from edge.demo_data import load_demo
from edge.models import Outbox
from edge.services.context import open_till
from hq.ingest import ingest_batch
from hq.models import DeadLetter, HqException, Sale, StoreDayClose, StoreShift
from tests.edge.conftest import CN, Clock, make_config, sign_in

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def store_day(tmp_path):
    """A real till's day: a shift, two walk-in sales, the shift closed 1 yuan short and the
    day closed; its outbox items, in seq order, as it would send them."""
    clock = Clock(dt.datetime(2026, 11, 23, 10, 0, tzinfo=CN))
    till = open_till(make_config(tmp_path), clock=clock, create_key=True)
    load_demo(till, members=5)
    client = create_app(till).test_client()
    manager = sign_in(client, "9001", "9999")
    assert client.post("/api/v1/shifts", headers=manager, json={"float": 10000}).status_code == 201
    for sku in ("P0001", "P0001"):
        clock.advance(minutes=1)
        res = client.post(
            "/api/v1/sales",
            headers=manager,
            json={"lines": [{"sku": sku}], "tenders": [{"kind": "cash", "amount": 1000}]},
        )
        assert res.status_code == 201, res.json
    clock.advance(minutes=1)
    res = client.post(
        "/api/v1/shifts/current/close", headers=manager, json={"counted": 10000 + 400 - 100}
    )
    assert res.json["shift"]["difference"] == -100
    assert client.post("/api/v1/day-close", headers=manager, json={}).status_code == 201
    items = [json.loads(o.payload) for o in Outbox.select().order_by(Outbox.seq)]
    till.db.close()
    assert [i["kind"] for i in items][-4:] == ["sale", "sale", "shift_close", "day_close"]
    return items


def ingest(items):
    store = items[0]["store"]
    outcome = ingest_batch(
        Sale._meta.database, p.up_topic(store, "tx"), store, p.make_batch(store, 1, items), NOW
    )
    assert outcome.ack is not None
    return outcome.ack


def test_a_stores_closes_are_kept_and_agree_with_its_sales(hq_db, store_day):
    ack = ingest(store_day)
    assert list(ack.rejected) == []
    shift = StoreShift.get()
    assert (shift.float_fen, shift.expected, shift.counted, shift.difference) == (
        10000,
        10400,
        10300,
        -100,
    )
    close = StoreDayClose.get()
    assert (close.day, close.revision, close.sales_count, close.sales_total) == (
        "2026-11-23",
        1,
        2,
        400,
    )
    assert close.shifts_difference == -100 and not close.mismatch
    assert HqException.select().where(HqException.kind.endswith("mismatch")).count() == 0


def test_figures_that_do_not_add_up_are_dead_lettered_and_the_rest_applied(hq_db, store_day):
    store_day[-1]["body"]["figures"]["sales"]["total"] += 100  # the tenders say otherwise
    store_day[-2]["body"]["store"] = "S999"  # a store reporting as another
    ack = ingest(store_day)
    shift_seq, close_seq = store_day[-2]["seq"], store_day[-1]["seq"]
    assert {r.seq for r in ack.rejected} == {shift_seq, close_seq}
    assert Sale.select().count() == 2  # the sales of the same batch are applied
    reasons = {d.seq: d.reason for d in DeadLetter.select()}
    assert "S999" in reasons[shift_seq]
    assert "total" in reasons[close_seq] and "add up" in reasons[close_seq]
    assert StoreShift.select().count() == 0 and StoreDayClose.select().count() == 0


def test_a_day_close_that_differs_from_hqs_sales_is_kept_and_flagged(hq_db, store_day):
    f = store_day[-1]["body"]["figures"]
    # one more walk-in sale of 5 yuan in cash than the store ever sent: every sum still
    # adds up, so only HQ's own sales can tell
    for part, key in (("sales", "count"), ("sales", "walkin_count")):
        f[part][key] += 1
    for key in ("total", "walkin_total", "cash_received"):
        f["sales"][key] += 500
    f["sales"]["tenders"]["cash"] += 500
    f["cash_in"] += 500
    f["cash_net"] += 500
    f["staff"][0]["sales_count"] += 1
    f["staff"][0]["sales_total"] += 500
    f["staff"][0]["cash_net"] += 500
    ack = ingest(store_day)
    assert list(ack.rejected) == []
    close = StoreDayClose.get()
    assert close.mismatch and close.sales_count == 3
    (flag,) = HqException.select().where(HqException.kind == "day_close_mismatch")
    assert flag.store == store_day[0]["store"] and flag.amount == 500
    assert {"figure": "sales count", "store": 3, "hq": 2} in flag.details["differences"]
    assert "日结" in flag.details["reason"]


def test_a_shift_close_that_differs_from_hqs_sales_is_kept_and_flagged(hq_db, store_day):
    body = store_day[-2]["body"]
    f = body["figures"]
    for key in ("count", "walkin_count"):
        f["sales"][key] += 1
    for key in ("total", "walkin_total", "cash_received"):
        f["sales"][key] += 500
    f["sales"]["tenders"]["cash"] += 500
    for key in ("cash_in", "cash_net"):
        f[key] += 500
    body["expected"] += 500
    body["difference"] -= 500
    ack = ingest(store_day)
    assert list(ack.rejected) == []
    assert StoreShift.get().difference == -600
    (flag,) = HqException.select().where(HqException.kind == "shift_mismatch")
    assert flag.ref == body["shift_id"] and flag.amount == 500
    assert {"figure": "sales total", "store": 900, "hq": 400} in flag.details["differences"]


def test_the_console_lists_a_stores_day_closes_and_shifts(hq_db, hq_db_url, store_day):
    from hq.api import create_app
    from hq.config import HqConfig
    from tests.hq.signin import session_client

    store = store_day[0]["store"]
    f = store_day[-1]["body"]["figures"]
    f["returns"]["count"] += 1  # one return HQ never received: flagged, still listed
    f["returns"]["total"] += 200
    f["returns"]["tenders"]["stored_value"] += 200
    f["staff"][0]["returns_total"] += 200
    ingest(store_day)
    app = create_app(HqConfig(database_url=hq_db_url), db=hq_db)
    app.testing = True
    admin = session_client(app, hq_db, "admin")
    assert f"/stores/{store}/closes" in admin.get(f"/stores/{store}").get_data(as_text=True)
    page = admin.get(f"/stores/{store}/closes").get_data(as_text=True)
    assert 'data-day="2026-11-23"' in page and "不符" in page
    assert "短款" in page and "-¥1.00" in page and "¥104.00" in page
    twin = admin.get(f"/api/stores/{store}/closes").json
    assert twin["day_closes"][0]["mismatch"] and twin["shifts"][0]["difference"] == -100
    other = session_client(app, hq_db, "store", "S999")
    assert other.get(f"/stores/{store}/closes").status_code == 403
    exceptions = admin.get(f"/exceptions?store={store}").get_data(as_text=True)
    assert "日结与销售不符" in exceptions


def _report_one_topup(figures: dict, principal: int, bonus: int) -> None:
    """The day close of a till that took one cash top-up more: every sum still adds up."""
    figures["topups"]["count"] += 1
    figures["topups"]["principal"] += principal
    figures["topups"]["bonus"] += bonus
    for key in ("cash_in", "cash_net"):
        figures[key] += principal
    figures["staff"][0]["cash_net"] += principal


def test_a_day_close_checks_the_top_ups_and_card_sales_hq_holds(hq_db, store_day):
    """A top-up the store counted but HQ never received (lost, or dead-lettered) shows as
    a difference of the day close; one HQ holds for that store and day does not."""
    from hq.models import CardSale, TopUp

    f = store_day[-1]["body"]["figures"]
    _report_one_topup(f, 50000, 5000)
    ack = ingest(store_day)
    assert list(ack.rejected) == []
    (flag,) = HqException.select().where(HqException.kind == "day_close_mismatch")
    assert {"figure": "topups count", "store": 1, "hq": 0} in flag.details["differences"]
    assert {"figure": "topups principal total", "store": 50000, "hq": 0} in flag.details[
        "differences"
    ]
    assert flag.amount == 50000
    assert not any(d["figure"].startswith("card") for d in flag.details["differences"])

    # the next revision, with HQ holding that top-up (and another store's, and the day
    # before's, which do not count): no difference
    store = store_day[0]["store"]
    at = dt.datetime(2026, 11, 23, 4, 0)
    for topup_id, where, when in (
        ("t-1", store, "2026-11-23T10:30:00+08:00"),
        ("t-2", "S999", "2026-11-23T10:30:00+08:00"),
        ("t-3", store, "2026-11-22T23:59:00+08:00"),
    ):
        TopUp.create(
            topup_id=topup_id, store=where, seq=1, member_id="m", principal=50000, bonus=5000,
            occurred_at=when, body={}, ingested_at=at,
        )  # fmt: skip
    CardSale.create(
        card_sale_id="c-1", store=store, seq=2, member_id="m", card_type="年卡", price=19800,
        valid_from=dt.date(2026, 11, 23), valid_to=dt.date(2027, 11, 22), rules_version=1,
        occurred_at="2026-11-23T11:00:00+08:00", body={}, ingested_at=at,
    )  # fmt: skip
    again = json.loads(json.dumps(store_day[-1]))
    again["seq"] += 1
    again["id"] = "0193f000-0000-7000-8000-00000000c104"  # a new item
    body = again["body"]
    body["close_id"] = "0193f000-0000-7000-8000-00000000c105"
    body["revision"] = 2
    body["figures"]["card_sales"]["count"] += 1
    body["figures"]["card_sales"]["total"] += 19800
    for key in ("cash_in", "cash_net"):
        body["figures"][key] += 19800
    body["figures"]["staff"][0]["cash_net"] += 19800
    store = again["store"]
    ack = ingest_batch(
        Sale._meta.database, p.up_topic(store, "tx"), store, p.make_batch(store, 1, [again]), NOW
    ).ack
    assert ack is not None and list(ack.rejected) == []
    latest = StoreDayClose.get(StoreDayClose.revision == 2)
    assert not latest.mismatch
