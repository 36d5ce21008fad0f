"""Shifts and the day close at the till (edge/services/shifts.py, edge/routes/shifts.py):
expected cash with change, refunds and top-ups; a day with two shifts, walk-in and member
sales; the printed slips; the up items, checked by core.protocol as HQ will."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from peewee import SQL

from core.errors import ProtocolError
from core.protocol import validate_item
from edge.models import Outbox
from tests.edge.conftest import sign_in

APPROVAL = {"code": "9001", "pin": "9999"}


def sale(client, headers, lines, tenders, member=None, **extra):
    body = {"lines": lines, "tenders": tenders, **extra}
    if member:
        body["member"] = {"card_no": member}
    res = client.post("/api/v1/sales", headers=headers, json=body)
    assert res.status_code == 201, res.json
    return res.json


def up_items(kind):
    return [
        validate_item(json.loads(o.payload))
        for o in Outbox.select().where(Outbox.kind == kind).order_by(Outbox.seq)
    ]


def test_expected_cash_is_the_float_and_the_cash_net_of_change_refunds_and_top_ups(client, cashier):
    opened = client.post("/api/v1/shifts", headers=cashier, json={"float": 50000})
    assert opened.status_code == 201, opened.json
    assert client.get("/api/v1/shifts/current", headers=cashier).json["shift"]["float"] == 50000
    # a walk-in pays 10 yuan for 2 yuan of water: 8 yuan change, 2 yuan stays in the drawer
    water = sale(client, cashier, [{"sku": "P0001"}], [{"kind": "cash", "amount": 1000}])
    assert (water["total"], water["change"]) == (200, 800)
    # a member pays 100 yuan in cash for apples
    apples = sale(
        client, cashier, [{"sku": "P0009", "qty": 3}], [{"kind": "cash", "amount": 10000}], "C0001"
    )
    # a top-up of 500 yuan, in cash; then stored value spent: no cash at all
    top = client.post(
        "/api/v1/topups", headers=cashier, json={"member": {"card_no": "C0001"}, "amount": 50000}
    )
    assert top.status_code == 201
    sale(
        client,
        cashier,
        [{"sku": "P0003"}],
        [{"kind": "stored_value", "amount": 6290}],
        "C0001",
        member_password="123456",
    )
    # the water comes back: 2 yuan refunded in cash (a manager approves)
    ret = client.post(
        f"/api/v1/sales/{water['sale_id']}/returns", headers=cashier, json={"manager": APPROVAL}
    )
    assert ret.status_code == 201, ret.json
    expected = 50000 + 200 + apples["total"] + 50000 - 200

    counted = client.post(
        "/api/v1/shifts/current/count", headers=cashier, json={"counted": expected - 150}
    )
    assert counted.status_code == 200, counted.json
    assert (counted.json["expected"], counted.json["difference"]) == (expected, -150)
    assert client.get("/api/v1/shifts/current", headers=cashier).json["shift"]["status"] == "open"

    # the drawer counted by denomination: 3 notes short of nothing, 1.50 yuan short
    notes, rest = {}, expected - 150
    for face in (10000, 5000, 1000, 100, 50, 10):
        notes[str(face)], rest = divmod(rest, face)
    closed = client.post(
        "/api/v1/shifts/current/close", headers=cashier, json={"denominations": notes}
    )
    assert closed.status_code == 200, closed.json
    shift = closed.json["shift"]
    assert (shift["expected"], shift["counted"], shift["difference"]) == (
        expected,
        expected - 150,
        -150,
    )
    f = shift["figures"]
    assert f["sales"]["count"] == 3
    assert f["sales"]["tenders"] == {
        "cash": 200 + apples["total"],
        "stored_value": 6290,
        "points": 0,
    }
    assert f["sales"]["change"] == 800 + apples["change"]
    assert f["sales"]["cash_received"] == 1000 + 10000
    assert (f["sales"]["member_count"], f["sales"]["walkin_count"]) == (2, 1)
    assert f["returns"] == {
        "count": 1,
        "total": 200,
        "tenders": {"cash": 200, "stored_value": 0, "points": 0},
    }
    assert f["topups"] == {"count": 1, "principal": 50000, "bonus": 10000}
    assert client.get("/api/v1/shifts/current", headers=cashier).json == {"shift": None}

    (item,) = up_items("shift_close")  # validated as HQ validates it
    assert item.body["difference"] == -150 and item.body["store"] == "S001"
    assert item.body["figures"] == f


def test_a_shift_opens_once_and_closes_only_when_open(client, cashier):
    bad = client.post("/api/v1/shifts", headers=cashier, json={"float": -5})
    assert bad.status_code == 400 and "备用金" in bad.json["message"]
    bad = client.post("/api/v1/shifts", headers=cashier, json={"float": "100"})
    assert bad.status_code == 400
    none = client.post("/api/v1/shifts/current/close", headers=cashier, json={"counted": 0})
    assert none.status_code == 404 and "请先开班" in none.json["message"]
    first = client.post("/api/v1/shifts", headers=cashier, json={"float": 0, "shift_id": "s-1"})
    assert first.status_code == 201
    again = client.post("/api/v1/shifts", headers=cashier, json={"float": 0, "shift_id": "s-1"})
    assert again.status_code == 200 and again.json["replayed"]
    second = client.post("/api/v1/shifts", headers=cashier, json={"float": 0})
    assert second.status_code == 409 and "未交班" in second.json["message"]
    for body, field in (
        ({}, "counted"),
        ({"counted": 1.5}, "counted"),
        ({"denominations": {"300": 1}}, "denominations"),
        ({"denominations": {"100": -1}}, "denominations"),
        ({"counted": 500, "denominations": {"100": 1}}, "counted"),
        ({"counted": 1, "extra": 1}, "extra"),
    ):
        res = client.post("/api/v1/shifts/current/close", headers=cashier, json=body)
        assert res.status_code == 400 and res.json["field"] == field, (body, res.json)
    assert client.get("/api/v1/shifts/current", headers=cashier).json["shift"]["status"] == "open"


def test_a_day_with_two_shifts_walk_in_and_member_sales(client, demo_till, clock):
    cashier = sign_in(client)
    manager = sign_in(client, "9001", "9999")
    # a sale before anyone opens a shift still counts in the day
    early = sale(client, cashier, [{"sku": "P0010"}], [{"kind": "cash", "amount": 8900}])
    clock.advance(minutes=5)
    client.post("/api/v1/shifts", headers=cashier, json={"float": 20000})
    client.post("/api/v1/shifts", headers=manager, json={"float": 30000})
    walkin = sale(client, cashier, [{"sku": "P0005"}], [{"kind": "cash", "amount": 5000}])
    member = sale(client, manager, [{"sku": "P0004"}], [{"kind": "cash", "amount": 5000}], "C0002")
    # yesterday's sale is not today's
    clock.advance(days=-1)
    sale(client, cashier, [{"sku": "P0001"}], [{"kind": "cash", "amount": 200}])
    clock.advance(days=1, minutes=5)

    busy = client.post("/api/v1/day-close", headers=manager, json={})
    assert busy.status_code == 409 and "未交班" in busy.json["message"]
    one = client.post(
        "/api/v1/shifts/current/close",
        headers=cashier,
        json={"counted": 20000 + walkin["total"] + 100},
    )
    assert one.json["shift"]["difference"] == 100  # 长款
    two = client.post(
        "/api/v1/shifts/current/close", headers=manager, json={"counted": 30000 + member["total"]}
    )
    assert two.json["shift"]["difference"] == 0

    refused = client.post("/api/v1/day-close", headers=cashier, json={})
    assert refused.status_code == 403 and refused.json["field"] == "manager"
    preview = client.post("/api/v1/day-close/preview", headers=cashier, json={"manager": APPROVAL})
    assert preview.status_code == 200, preview.json
    closed = client.post("/api/v1/day-close", headers=cashier, json={"manager": APPROVAL})
    assert closed.status_code == 201, closed.json
    f = closed.json["figures"]
    assert f == preview.json["figures"]
    assert closed.json["day"] == "2026-11-23" and closed.json["revision"] == 1
    total = early["total"] + walkin["total"] + member["total"]
    assert (f["sales"]["count"], f["sales"]["total"]) == (3, total)
    assert (f["sales"]["member_count"], f["sales"]["member_total"]) == (1, member["total"])
    assert (f["sales"]["walkin_count"], f["sales"]["walkin_total"]) == (
        2,
        early["total"] + walkin["total"],
    )
    assert f["sales"]["tenders"]["cash"] == total
    staff = {s["code"]: s for s in f["staff"]}
    assert staff["1001"]["sales_count"] == 2 and staff["9001"]["sales_total"] == member["total"]
    assert staff["9001"]["name"] == "王店长" or staff["9001"]["name"]
    assert [s["difference"] for s in f["shifts"]] == [100, 0]
    assert f["shifts_difference"] == 100

    twice = client.post("/api/v1/day-close", headers=manager, json={})
    assert (
        twice.status_code == 409
        and "已于" in twice.json["message"]
        and "日结" in twice.json["message"]
    )
    again = client.post("/api/v1/day-close", headers=manager, json={"reclose": True})
    assert again.status_code == 201 and again.json["revision"] == 2
    items = up_items("day_close")
    assert [i.body["revision"] for i in items] == [1, 2]
    assert items[0].body["closed_by"] == "9001"
    bad = client.post("/api/v1/day-close", headers=manager, json={"day": "2026-11-31"})
    assert bad.status_code == 400 and bad.json["field"] == "day"
    future = client.post("/api/v1/day-close", headers=manager, json={"day": "2026-11-24"})
    assert future.status_code == 400 and "未来" in future.json["message"]
    yesterday = client.post("/api/v1/day-close", headers=manager, json={"day": "2026-11-22"})
    assert yesterday.status_code == 201 and yesterday.json["figures"]["sales"]["count"] == 1


@pytest.mark.parametrize(
    ("path", "change"),
    [
        (("figures", "sales", "total"), 1),
        (("figures", "sales", "member_count"), 1),
        (("figures", "cash_net"), 1),
        (("difference",), -1),
        (("expected",), 1),
        (("float",), -1),
        (("figures", "returns", "tenders", "cash"), 10**20),
    ],
)
def test_a_shift_close_whose_figures_do_not_add_up_is_refused(client, cashier, path, change):
    client.post("/api/v1/shifts", headers=cashier, json={"float": 1000})
    sale(client, cashier, [{"sku": "P0001"}], [{"kind": "cash", "amount": 500}])
    client.post("/api/v1/shifts/current/close", headers=cashier, json={"counted": 1200})
    raw = json.loads(Outbox.get(Outbox.kind == "shift_close").payload)
    validate_item(raw)
    target = raw["body"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] += change
    with pytest.raises(ProtocolError):
        validate_item(raw)


def test_reports_read_from_the_first_row_of_their_span_and_survive_a_clock_step_back(client, clock):
    from edge.models import Sale
    from edge.services.shifts import _first_rowid

    assert _first_rowid(Sale, "2026-11-23") == 0  # no sales: nothing to skip
    at = clock.now.replace(hour=0, minute=30)  # 00:30 on the 23rd
    done = {}
    # a sale three days before, then the day: its first sale, the clock stepped back an
    # hour over midnight (a sale "on the 22nd"), the clock right again, another sale
    for name, when in (
        ("old", at - dt.timedelta(days=3)),
        ("first", at),
        ("stepped", at - dt.timedelta(hours=1)),
        ("later", at + dt.timedelta(minutes=30)),
    ):
        clock.now = when
        done[name] = sale(
            client, sign_in(client), [{"sku": "P0001"}], [{"kind": "cash", "amount": 200}]
        )
    rowid = {
        n: Sale.select(SQL("rowid")).where(Sale.id == d["sale_id"]).scalar()
        for n, d in done.items()
    }
    assert _first_rowid(Sale, "2026-11-21") == rowid["first"]  # the old sale is not read
    res = client.post("/api/v1/day-close/preview", headers=sign_in(client, "9001", "9999"), json={})
    assert res.json["figures"]["sales"]["count"] == 2  # first and later, not the stepped one
    yesterday = client.post(
        "/api/v1/day-close/preview",
        headers=sign_in(client, "9001", "9999"),
        json={"day": "2026-11-22"},
    )
    assert yesterday.json["figures"]["sales"]["count"] == 1


def test_a_closed_shifts_slip_is_reprinted(client, cashier):
    client.post("/api/v1/shifts", headers=cashier, json={"float": 0, "shift_id": "SH-9"})
    early = client.post("/api/v1/shifts/SH-9/reprint", headers=cashier, json={})
    assert early.status_code == 404 and "交班单" in early.json["message"]  # still open
    client.post("/api/v1/shifts/current/close", headers=cashier, json={"counted": 0})
    res = client.post("/api/v1/shifts/SH-9/reprint", headers=cashier, json={})
    assert res.status_code == 200
    assert res.json["receipt"]["title"] == "交班单" and res.json["receipt"]["kind"] == "shift"
    assert client.post("/api/v1/shifts/NOPE/reprint", headers=cashier, json={}).status_code == 404


def test_a_retried_close_gets_the_closed_shift_back(client, cashier):
    client.post("/api/v1/shifts", headers=cashier, json={"float": 1000, "shift_id": "SH-7"})
    body = {"counted": 900, "shift_id": "SH-7"}
    first = client.post("/api/v1/shifts/current/close", headers=cashier, json=body)
    assert first.status_code == 200 and not first.json["replayed"]
    again = client.post("/api/v1/shifts/current/close", headers=cashier, json=body)
    assert again.status_code == 200 and again.json["replayed"]
    assert again.json["shift"]["difference"] == -100
    other = client.post(
        "/api/v1/shifts/current/close", headers=cashier, json={"counted": 1000, "shift_id": "SH-7"}
    )
    assert other.status_code == 409 and "已于" in other.json["message"]
    assert len(up_items("shift_close")) == 1
    client.post("/api/v1/shifts", headers=cashier, json={"float": 0, "shift_id": "SH-8"})
    wrong = client.post(
        "/api/v1/shifts/current/close", headers=cashier, json={"counted": 0, "shift_id": "SH-X"}
    )
    assert wrong.status_code == 409 and wrong.json["field"] == "shift_id"
