"""Issue 9 defect 10: a cashier may not top up any amount. Past
``till.cashier_topup_limit`` for one top-up, or ``till.cashier_topup_day_limit`` for
what one cashier has topped up on the store's day (across their shifts), a manager
approves (``manager: {code, pin}``, as for discounts); past ``till.topup_max`` nobody
may, in one top-up."""

from __future__ import annotations

import pytest

from edge.api import create_app
from edge.config import config_problems
from edge.demo_data import load_demo
from edge.models import Ledger, TopUp
from edge.services.context import open_till
from edge.services.staff import add_staff
from tests.edge.conftest import make_config, sign_in

LIMITS = {"cashier_topup_limit": 50000, "cashier_topup_day_limit": 80000, "topup_max": 200000}
MANAGER = {"code": "9001", "pin": "9999"}


@pytest.fixture
def limited(tmp_path, clock):
    t = open_till(make_config(tmp_path, till=LIMITS), clock=clock, create_key=True)
    load_demo(t, members=2)
    add_staff(t, "1002", "赵收银", "cashier", "2345")
    yield create_app(t).test_client()
    t.db.close()


def _topup(client, headers, amount, **extra):
    return client.post(
        "/api/v1/topups",
        headers=headers,
        json={"member": {"card_no": "C0001"}, "amount": amount, **extra},
    )


def test_ten_billion_fen_is_refused_to_everyone(limited):
    for who in (sign_in(limited), sign_in(limited, "9001", "9999")):
        res = _topup(limited, who, 10**10)
        assert res.status_code == 400 and res.json["field"] == "amount", res.json
        assert "200000" in res.json["message"]
    res = _topup(limited, sign_in(limited), 200001, manager=MANAGER)
    assert res.status_code == 400 and res.json["field"] == "amount"
    assert TopUp.select().count() == 0


def test_a_cashier_past_the_per_topup_limit_needs_a_manager(limited):
    cashier = sign_in(limited)
    assert _topup(limited, cashier, 50000).status_code == 201
    res = _topup(limited, cashier, 50001)
    assert res.status_code == 403 and res.json["field"] == "manager", res.json
    assert "店长授权" in res.json["message"]
    assert TopUp.select().count() == 1
    wrong = _topup(limited, cashier, 50001, manager={"code": "9001", "pin": "1111"})
    assert wrong.status_code == 403
    approved = _topup(limited, cashier, 50001, manager=MANAGER)
    assert approved.status_code == 201, approved.json
    assert Ledger.select().where(Ledger.ref == approved.json["topup_id"]).count() >= 1


def test_a_cashier_past_the_day_limit_needs_a_manager_until_the_next_day(limited, clock):
    cashier = sign_in(limited)
    for _ in range(2):
        assert _topup(limited, cashier, 40000).status_code == 201  # 80000: at the limit
    res = _topup(limited, cashier, 1)
    assert res.status_code == 403 and res.json["field"] == "manager", res.json
    assert "80000" in res.json["message"] or "800" in res.json["message"]
    assert _topup(limited, cashier, 1, manager=MANAGER).status_code == 201
    # another cashier's day is their own
    other = sign_in(limited, "1002", "2345")
    assert _topup(limited, other, 40000).status_code == 201
    clock.advance(days=1)
    cashier = sign_in(limited)
    assert _topup(limited, cashier, 40000).status_code == 201


def test_a_signed_in_manager_needs_no_approval_below_the_maximum(limited):
    manager = sign_in(limited, "9001", "9999")
    assert _topup(limited, manager, 200000).status_code == 201
    assert _topup(limited, manager, 200000).status_code == 201


def test_a_replayed_topup_needs_no_second_approval(limited):
    cashier = sign_in(limited)
    topup_id = "0190f5e2-7a39-7c1e-9a52-3f4e5d6c7b8c"
    first = _topup(limited, cashier, 60000, manager=MANAGER, topup_id=topup_id)
    assert first.status_code == 201
    again = _topup(limited, cashier, 60000, topup_id=topup_id)
    assert again.status_code == 200 and again.json["replayed"] is True


def test_topup_limits_are_validated():
    _, problems = config_problems({"till": {"topup_max": 0}})
    assert problems == ["till.topup_max: must be from 1 to 10000000000 fen"]
    _, problems = config_problems({"till": {"cashier_topup_limit": -1}})
    assert problems == ["till.cashier_topup_limit: must not be negative"]
    _, problems = config_problems({"till": {"cashier_topup_day_limit": -1}})
    assert problems == ["till.cashier_topup_day_limit: must not be negative"]
