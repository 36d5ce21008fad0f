"""Issue 9 defect 11: PIN guessing. Under 40 concurrent wrong PINs for one code, at most
``till.pin_max_failures`` are checked; an unknown staff code costs the same scrypt work as
a known one (so codes cannot be told apart by time); and one address is limited across
every code (so one PIN cannot be tried on each code in turn)."""

from __future__ import annotations

import threading
import time

import pytest

from edge import security
from edge.api import create_app
from edge.demo_data import load_demo
from edge.services.context import open_till
from tests.edge.conftest import make_config

N = 1024  # the tests' security.scrypt_n (tests/edge/conftest.py)


@pytest.fixture
def scrypt_calls(monkeypatch):
    """Every scrypt computation, by cost; each one made as slow as a real till's (40 ms),
    so concurrent attempts overlap as they do in production."""
    calls: list[int] = []
    real = security.hashlib.scrypt

    def counting(*args, **kwargs):
        calls.append(kwargs["n"])
        time.sleep(0.04)
        return real(*args, **kwargs)

    monkeypatch.setattr(security.hashlib, "scrypt", counting)
    return calls


def _try(client, code, pin, addr="10.0.0.1"):
    return client.post(
        "/api/v1/session",
        json={"staff_code": code, "pin": pin},
        environ_base={"REMOTE_ADDR": addr},
    )


def test_forty_concurrent_wrong_pins_check_at_most_the_limit(app, scrypt_calls):
    statuses: list[int] = []
    start = threading.Barrier(40)

    def guess(i: int) -> None:
        client = app.test_client()
        start.wait()
        res = _try(client, "1001", f"{i:04d}" if i != 1234 else "0000", f"10.0.1.{i}")
        statuses.append(res.status_code)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(statuses) == 40 and set(statuses) <= {403, 429}
    assert len(scrypt_calls) <= 5, scrypt_calls
    assert statuses.count(429) >= 35
    # and the code is locked now, even for the right PIN
    assert _try(app.test_client(), "1001", "1234").status_code == 429


def test_an_unknown_code_costs_the_same_scrypt_work_as_a_known_one(client, scrypt_calls):
    assert _try(client, "1001", "0000").status_code == 403
    known = list(scrypt_calls)
    scrypt_calls.clear()
    unknown = _try(client, "7777", "0000")
    assert unknown.status_code == 403
    assert scrypt_calls == known == [N]
    assert unknown.json == _try(client, "1001", "0001").json


def test_an_unknown_manager_code_costs_the_same_as_a_known_one(client, cashier, scrypt_calls):
    body = {
        "lines": [{"sku": "P0003"}],
        "manual_adjustment": 90,
        "tenders": [{"kind": "cash", "amount": 10000}],
    }
    counts = []
    for code in ("9001", "9876", "1001"):  # a manager, nobody, a cashier
        scrypt_calls.clear()
        res = client.post(
            "/api/v1/sales", headers=cashier, json=body | {"manager": {"code": code, "pin": "1111"}}
        )
        assert res.status_code == 403 and res.json["field"] == "manager", res.json
        counts.append(list(scrypt_calls))
    assert counts == [[N], [N], [N]]


def test_unknown_codes_lock_like_known_ones(client):
    for _ in range(4):
        assert _try(client, "7777", "0000").status_code == 403
    assert _try(client, "7777", "0000").status_code == 429


@pytest.fixture
def strict_app(tmp_path, clock):
    t = open_till(
        make_config(tmp_path, till={"address_max_failures": 8, "address_lockout_minutes": 10}),
        clock=clock,
        create_key=True,
    )
    load_demo(t, members=2)
    yield create_app(t)
    t.db.close()


def test_one_address_trying_one_pin_across_every_code_is_locked(strict_app, clock):
    client = strict_app.test_client()
    for code in range(2000, 2007):  # one try on each code: no code's own limit is near
        assert _try(client, str(code), "1234").status_code == 403
    # the eighth wrong PIN from the address locks it, as the fifth for one code does
    assert _try(client, "2007", "1234").status_code == 429
    # even a right PIN on a code it never tried is refused now
    locked = _try(client, "9001", "9999")
    assert locked.status_code == 429, locked.json
    assert locked.json["error"] == "locked" and "10 分钟" in locked.json["message"]
    # another address is not
    assert _try(client, "9001", "9999", addr="10.0.0.2").status_code == 201
    clock.advance(minutes=10, seconds=1)
    assert _try(client, "9001", "9999").status_code == 201


def test_a_locked_address_locks_no_staff_code_by_going_on(strict_app):
    client = strict_app.test_client()
    for code in range(2000, 2008):
        _try(client, str(code), "1234")
    for _ in range(10):
        assert _try(client, "1001", "0000").status_code == 429
    # 1001's own count was never touched: from another address its right PIN works
    assert _try(client, "1001", "1234", addr="10.0.0.2").status_code == 201


def test_right_pins_between_guesses_do_not_reset_the_address_count(strict_app):
    client = strict_app.test_client()
    for i in range(7):
        assert _try(client, f"30{i:02d}", "1234").status_code == 403
        assert _try(client, "1001", "1234").status_code == 201
    assert _try(client, "3007", "1234").status_code == 429
    assert _try(client, "1001", "1234").status_code == 429


def test_a_typo_now_and_then_never_locks_the_address(strict_app, clock):
    client = strict_app.test_client()
    for _ in range(20):
        assert _try(client, "1001", "0000").status_code == 403
        assert _try(client, "1001", "1234").status_code == 201
        clock.advance(minutes=10)


def test_address_limits_are_validated():
    from edge.config import config_problems

    _, problems = config_problems({"till": {"address_max_failures": -1}})
    assert problems == ["till.address_max_failures: must not be negative (0: no limit)"]
    _, problems = config_problems({"till": {"address_lockout_minutes": 0}})
    assert problems == ["till.address_lockout_minutes: must be positive"]
    assert config_problems({"till": {"address_max_failures": 0}})[1] == []
