"""Staff PINs: wrong ones are counted per staff code, and too many lock the code."""

from __future__ import annotations

from tests.edge.conftest import sign_in

OIL = "P0003"


def _try(client, code, pin):
    return client.post("/api/v1/session", json={"staff_code": code, "pin": pin})


def test_five_wrong_pins_lock_the_staff_code_for_five_minutes(client, clock):
    for _ in range(4):
        res = _try(client, "1001", "0000")
        assert res.status_code == 403 and res.json["field"] == "pin"
    fifth = _try(client, "1001", "0000")
    assert fifth.status_code == 429, fifth.json
    assert fifth.json["error"] == "locked"
    assert "已锁定" in fifth.json["message"] and "5 分钟" in fifth.json["message"]
    # the right PIN does not open a locked code: that is what stops the guessing
    right = _try(client, "1001", "1234")
    assert right.status_code == 429 and "1001" in right.json["message"]
    # another staff code is not affected
    sign_in(client, "9001", "9999")
    clock.advance(minutes=4, seconds=59)
    assert _try(client, "1001", "1234").status_code == 429
    clock.advance(seconds=2)
    sign_in(client, "1001", "1234")


def test_a_right_pin_resets_the_count(client):
    for _ in range(4):
        assert _try(client, "1001", "0000").status_code == 403
    sign_in(client, "1001", "1234")
    for _ in range(4):
        assert _try(client, "1001", "0000").status_code == 403
    sign_in(client, "1001", "1234")


def test_after_a_lockout_the_count_starts_again(client, clock):
    for _ in range(5):
        _try(client, "1001", "0000")
    clock.advance(minutes=6)
    assert _try(client, "1001", "0000").status_code == 403
    sign_in(client, "1001", "1234")


def test_guessing_a_managers_pin_through_an_approval_locks_it_too(client, cashier):
    body = dict(
        lines=[{"sku": OIL}], manual_adjustment=90, tenders=[{"kind": "cash", "amount": 10000}]
    )
    for _ in range(4):
        res = client.post(
            "/api/v1/sales",
            headers=cashier,
            json=body | {"manager": {"code": "9001", "pin": "1111"}},
        )
        assert res.status_code == 403 and res.json["field"] == "manager", res.json
        assert "店长编号或PIN错误" in res.json["message"]
    res = client.post(
        "/api/v1/sales", headers=cashier, json=body | {"manager": {"code": "9001", "pin": "1111"}}
    )
    assert res.status_code == 429 and res.json["field"] == "manager", res.json
    # the manager's own sign-in is locked as well
    assert _try(client, "9001", "9999").status_code == 429
    approved = client.post(
        "/api/v1/sales", headers=cashier, json=body | {"manager": {"code": "9001", "pin": "9999"}}
    )
    assert approved.status_code == 429


def test_a_malformed_manager_approval_names_the_field(client, cashier):
    body = dict(
        lines=[{"sku": OIL}], manual_adjustment=90, tenders=[{"kind": "cash", "amount": 10000}]
    )
    res = client.post(
        "/api/v1/sales", headers=cashier, json=body | {"manager": {"code": "9001", "pin": 9999}}
    )
    assert res.status_code == 400 and res.json["field"] == "manager.pin"
    assert res.json["message"].startswith("折让需要店长授权")
    res = client.post("/api/v1/sales", headers=cashier, json=body | {"manager": {"pin": "9999"}})
    assert res.status_code == 400 and res.json["field"] == "manager.code"


def test_lockout_settings_are_validated():
    from edge.config import config_problems

    _, problems = config_problems({"till": {"pin_max_failures": 0, "pin_lockout_minutes": -1}})
    assert any(p.startswith("till.pin_max_failures") for p in problems)
    assert any(p.startswith("till.pin_lockout_minutes") for p in problems)


def test_guessing_a_members_password_locks_their_stored_value(client, cashier, clock):
    client.post(
        "/api/v1/topups", headers=cashier, json={"member": {"card_no": "C0001"}, "amount": 10000}
    )
    body = {
        "member": {"card_no": "C0001"},
        "lines": [{"sku": OIL}],
        "tenders": [{"kind": "stored_value", "amount": 6290}],
    }
    for _ in range(4):
        res = client.post(
            "/api/v1/sales", headers=cashier, json=body | {"member_password": "000000"}
        )
        assert res.status_code == 403 and res.json["field"] == "member_password", res.json
    fifth = client.post("/api/v1/sales", headers=cashier, json=body | {"member_password": "000000"})
    assert fifth.status_code == 429 and fifth.json["field"] == "member_password"
    assert fifth.json["message"].startswith("会员密码连续输错次数过多, 已锁定")
    right = client.post("/api/v1/sales", headers=cashier, json=body | {"member_password": "123456"})
    assert right.status_code == 429
    clock.advance(minutes=6)
    right = client.post("/api/v1/sales", headers=cashier, json=body | {"member_password": "123456"})
    assert right.status_code == 201, right.json
