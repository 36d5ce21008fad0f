"""Online authorization of spends (invariants 2 and 3): approve, refuse, retry, timeout."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest

from core.errors import Forbidden, InsufficientFunds
from core.ids import uuid7
from edge.config import BalancePolicy
from edge.demo_data import load_demo
from edge.models import Ledger, Sale
from edge.services import members as member_svc
from edge.services import sales
from edge.services.context import SpendRequest, open_till
from edge.services.staff import sign_in
from edge.sync.agent import SyncAgent
from edge.sync.authorizer import MqttAuthorizer
from hq.models import Authorization
from hq.models import Member as HqMember
from tests.edge.conftest import make_config
from tests.sync.conftest import new_code, start_worker
from tests.sync.helpers import announce_hq_offline, wait_until

ZHANG = "13800000001"


@pytest.fixture
def chain(tmp_path, own_mosquitto, hq_db_url) -> Iterator[dict]:
    worker = start_worker(hq_db_url, own_mosquitto)
    code = new_code("Z")
    cfg = own_mosquitto.sync_config(code, ack_timeout=1.0)
    authorizer = MqttAuthorizer(code, cfg).start(wait=5)
    till = open_till(
        make_config(tmp_path, store={"code": code}), authorizer=authorizer, create_key=True
    )
    load_demo(till, members=2)
    agent = SyncAgent(till, cfg).start()
    zhang = member_svc.by_phone(till, ZHANG)
    _, staff = sign_in(till, "1001", "1234")
    sales.top_up(till, staff, {"card_no": "C0001"}, 10000)
    wait_until(
        lambda: (m := HqMember.get_or_none(HqMember.id == zhang.id)) and m.sv_principal >= 10000,
        20,
        "张三's top-up at HQ",
    )
    wait_until(lambda: authorizer.hq_online, 10, "HQ state seen by the authorizer")
    yield {
        "till": till,
        "staff": staff,
        "zhang": zhang.id,
        "worker": worker,
        "authorizer": authorizer,
        "agent": agent,
        "mosquitto": own_mosquitto,
    }
    agent.stop()
    authorizer.stop()
    till.db.close()
    worker.stop()


def sv_sale(chain: dict, amount: int, sale_id: str | None = None) -> dict:
    req = {
        "member": {"card_no": "C0001"},
        "lines": [{"sku": "P0003", "qty": 20}],
        "tenders": [{"kind": "stored_value", "amount": amount}, {"kind": "cash", "amount": 200000}],
        "member_password": "123456",
    }
    if sale_id:
        req["sale_id"] = sale_id
    return sales.checkout(chain["till"], chain["staff"], sales.CheckoutRequest.from_request(req))


def test_approved_spend_is_held_then_settled_by_the_sale(chain):
    before = HqMember.get_by_id(chain["zhang"])
    result = sv_sale(chain, 3000)
    sale = Sale.get_by_id(result["sale_id"])
    assert sale.body["offline"] is False
    auth = Authorization.get(Authorization.sale_id == sale.id)
    assert sale.body["authorization_id"] == auth.id
    assert auth.stored_value == 3000
    wait_until(
        lambda: Authorization.get_by_id(auth.id).status == "settled", 20, "hold settled by the sale"
    )
    m = HqMember.get_by_id(chain["zhang"])
    assert m.sv_principal + m.sv_bonus == before.sv_principal + before.sv_bonus - 3000


def test_hq_refuses_more_than_the_member_has(chain):
    with pytest.raises(InsufficientFunds, match="总部拒绝授权"):
        sv_sale(chain, 50000)
    assert Sale.select().where(Sale.member_id == chain["zhang"]).count() == 0


def test_retry_with_the_same_sale_id_never_holds_twice(chain):
    sale_id = uuid7()
    day = chain["till"].now().date().isoformat()
    request = SpendRequest(sale_id, chain["zhang"], 2000, 0, day)
    first = chain["authorizer"].authorize(request)
    again = chain["authorizer"].authorize(request)
    assert first.online and first.approved
    assert again.authorization_id == first.authorization_id
    assert Authorization.select().where(Authorization.sale_id == sale_id).count() == 1
    # the till's own retry of the whole sale is a replay, not a second sale
    one = sv_sale(chain, 2000, sale_id)
    two = sv_sale(chain, 2000, sale_id)
    assert one["sale_id"] == two["sale_id"] == sale_id
    assert Sale.select().where(Sale.id == sale_id).count() == 1
    assert (
        Ledger.select().where((Ledger.ref == sale_id) & (Ledger.account != "points")).count() >= 1
    )
    wait_until(
        lambda: Authorization.get(Authorization.sale_id == sale_id).status == "settled",
        20,
        "settled once",
    )
    spent = sum(
        -r.delta
        for r in Ledger.select().where(
            (Ledger.ref == sale_id) & Ledger.account.in_(["sv_principal", "sv_bonus"])
        )
    )
    assert spent == 2000


def test_no_answer_within_the_hard_timeout_falls_back_to_the_offline_policy(chain):
    chain["agent"].stop()
    chain["worker"].stop()  # a clean stop leaves HQ's retained state online: nobody answers
    started = time.monotonic()
    result = sv_sale(chain, 1000)
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 2.5, elapsed
    sale = Sale.get_by_id(result["sale_id"])
    assert sale.body["offline"] is True and sale.body["authorization_id"] is None
    till = chain["till"]
    till.config = dataclasses.replace(
        till.config,
        offline=dataclasses.replace(
            till.config.offline, stored_value=BalancePolicy("online_only", 0)
        ),
    )
    started = time.monotonic()
    with pytest.raises(Forbidden, match="在线授权"):
        sv_sale(chain, 1000)
    assert time.monotonic() - started < 2.5


def test_hq_announced_offline_decides_at_once(chain):
    announce_hq_offline(chain)
    started = time.monotonic()
    decision = chain["authorizer"].authorize(
        SpendRequest(uuid7(), chain["zhang"], 100, 0, "2026-11-23")
    )
    assert not decision.online
    assert time.monotonic() - started < 0.2


def test_hq_holds_and_the_till_spends_in_the_chains_stored_value_order(chain):
    from core.rules import DEMO_RULES
    from hq.cli import push_changes
    from hq.config import HqConfig
    from hq.rules import publish_rules

    till = chain["till"]
    sales.top_up(till, chain["staff"], {"card_no": "C0001"}, 50000)  # 充500送100
    wait_until(lambda: HqMember.get_by_id(chain["zhang"]).sv_bonus >= 10000, 20, "the bonus at HQ")
    changes = publish_rules(
        HqMember._meta.database,
        DEMO_RULES.to_dict() | {"version": 2, "stored_value_spend": "bonus_first"},
    )
    # as `huiyuan-hq publish-rules` does: push them to the stores now
    assert push_changes(HqConfig(mqtt=chain["mosquitto"].hq_settings("hq-cli")), changes)
    wait_until(lambda: till.rules().version == 2, 20, "rules version 2 at the store")
    result = sv_sale(chain, 3000)
    assert result["sale"]["stored_value"] == {"principal": 0, "bonus": 3000}
    auth = Authorization.get(Authorization.sale_id == result["sale_id"])
    assert (auth.sv_principal, auth.sv_bonus) == (0, 3000)


def test_a_member_hq_has_not_received_yet_is_decided_offline(chain):
    """Registered at this store a moment ago, the member's registration still on its way:
    HQ cannot judge a balance it has not seen, so the till applies its offline policy
    instead of refusing the member outright."""
    req = SpendRequest(uuid7(), uuid7(), stored_value=100, points=0, day="2026-11-23")
    decision = chain["authorizer"].authorize(req)
    assert (decision.online, decision.approved) == (False, False), decision
    assert "has not received" in decision.reason
