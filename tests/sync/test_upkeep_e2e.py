"""Member upkeep through the real chain (a till, its sync agent and authorizer, a broker
and an HQ worker): a stored value refund authorized online and settled at HQ, refused
with HQ offline; a profile edit and a password reach HQ, and HQ's password reset reaches
the till (docs/programme/upkeep.md)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.errors import Forbidden
from edge.demo_data import load_demo
from edge.models import Member, SvRefund
from edge.services import members as member_svc
from edge.services import sales, upkeep
from edge.services.context import open_till
from edge.services.staff import SignedIn, sign_in
from edge.sync.agent import SyncAgent
from edge.sync.authorizer import MqttAuthorizer
from hq.cli import push_changes
from hq.config import HqConfig
from hq.models import Authorization, LedgerEntry, utcnow
from hq.models import Member as HqMember
from hq.programme import upkeep as hq_upkeep
from hq.reconcile import hq_ledger_differences
from tests.edge.conftest import make_config
from tests.sync.conftest import new_code, start_worker
from tests.sync.helpers import announce_hq_offline, wait_until

ZHANG = "13800000001"
MANAGER = SignedIn("9001", "店长", "manager")


@pytest.fixture
def chain(tmp_path, own_mosquitto, hq_db_url) -> Iterator[dict]:
    worker = start_worker(hq_db_url, own_mosquitto)
    code = new_code("U")
    cfg = own_mosquitto.sync_config(code, ack_timeout=1.0)
    authorizer = MqttAuthorizer(code, cfg).start(wait=5)
    till = open_till(
        make_config(tmp_path, store={"code": code}), authorizer=authorizer, create_key=True
    )
    load_demo(till, members=2)
    agent = SyncAgent(till, cfg).start()
    zhang = member_svc.by_phone(till, ZHANG)
    _, staff = sign_in(till, "1001", "1234")
    sales.top_up(till, staff, {"card_no": "C0001"}, 50000)  # + 10,000 bonus (demo rules)
    wait_until(
        lambda: (m := HqMember.get_or_none(HqMember.id == zhang.id)) and m.sv_principal >= 50000,
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
        "mosquitto": own_mosquitto,
    }
    agent.stop()
    authorizer.stop()
    till.db.close()
    worker.stop()


def test_refund_authorized_online_and_settled_at_hq(chain, hq_db_url):
    till, zhang = chain["till"], chain["zhang"]
    before = HqMember.get_by_id(zhang)
    result = upkeep.refund_stored_value(till, chain["staff"], MANAGER, zhang, 20000, "搬家")
    assert (result["cash"], result["bonus_forfeited"]) == (20000, before.sv_bonus)
    auth = Authorization.get(Authorization.sale_id == result["refund_id"])
    wait_until(
        lambda: Authorization.get_by_id(auth.id).status == "settled", 20, "refund settled at HQ"
    )
    m = HqMember.get_by_id(zhang)
    assert (m.sv_principal, m.sv_bonus) == (before.sv_principal - 20000, 0)
    assert LedgerEntry.select().where(LedgerEntry.reason == "sv_refund").count() == 1
    assert hq_ledger_differences(HqMember._meta.database) == []
    # the till, once HQ's record is back, shows HQ's figures
    wait_until(
        lambda: (
            Member.get_by_id(zhang).sv_principal == m.sv_principal
            and Member.get_by_id(zhang).sv_bonus == 0
        ),
        20,
        "the till's balance after HQ's record",
    )
    statement = upkeep.statement(till, zhang)
    assert statement["closing"] == statement["balance"]


def test_refund_refused_with_hq_offline(chain):
    announce_hq_offline(chain)
    with pytest.raises(Forbidden, match="总部在线授权"):
        upkeep.refund_stored_value(chain["till"], chain["staff"], MANAGER, chain["zhang"], 100, "x")
    assert SvRefund.select().count() == 0


def test_edit_and_password_reach_hq_and_hqs_reset_reaches_the_till(chain):
    till, zhang, staff = chain["till"], chain["zhang"], chain["staff"]
    upkeep.update_member(till, zhang, {"occupation": "医生", "tags": ["投诉"]}, staff)
    upkeep.change_password(till, zhang, "123456", "654321", staff)
    local_hash = Member.get_by_id(zhang).password_hash
    wait_until(
        lambda: (
            HqMember.get_by_id(zhang).password_hash == local_hash
            and HqMember.get_by_id(zhang).tags == ["投诉"]
        ),
        20,
        "the edit and the password at HQ",
    )
    assert HqMember.get_by_id(zhang).occupation == "医生"
    changes = hq_upkeep.reset_member_password(
        HqMember._meta.database, zhang, "hq-wang", "会员来电", utcnow()
    )
    assert push_changes(HqConfig(mqtt=chain["mosquitto"].hq_settings("hq-cli")), changes)
    wait_until(lambda: Member.get_by_id(zhang).password_hash is None, 20, "the reset at the till")
    assert Member.get_by_id(zhang).occupation == "医生"
