"""Follow-up calls through the real chain (a till and its sync agent, a broker, an HQ
worker): a member's first purchase reaches HQ, the job makes the new-member call for the
maintainer, the call comes down to the store, the clerk records an outcome with a
complaint, and HQ closes the task, tags the member and gives the store manager a call,
which comes down too (docs/followups.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from edge.demo_data import load_demo
from edge.models import FollowUp
from edge.services import followups as till_followups
from edge.services import members as member_svc
from edge.services import sales
from edge.services.context import open_till
from edge.services.staff import sign_in
from edge.sync.agent import SyncAgent
from hq.cli import push_changes
from hq.config import HqConfig
from hq.followups import tasks
from hq.models import FollowUp as HqFollowUp
from hq.models import Member as HqMember
from hq.models import ReportMember, utcnow
from hq.programme import staff as hq_staff
from tests.edge.conftest import make_config
from tests.sync.conftest import new_code, start_worker
from tests.sync.helpers import wait_until

ZHANG = "13800000001"  # a demo member, maintained by 1001


@pytest.fixture
def chain(tmp_path, own_mosquitto, hq_db_url) -> Iterator[dict]:
    worker = start_worker(hq_db_url, own_mosquitto)
    code = new_code("F")
    cfg = own_mosquitto.sync_config(code, ack_timeout=1.0)
    till = open_till(make_config(tmp_path, store={"code": code}), create_key=True)
    load_demo(till, members=2)
    agent = SyncAgent(till, cfg).start()
    yield {"till": till, "code": code, "mosquitto": own_mosquitto}
    agent.stop()
    till.db.close()
    worker.stop()


def test_a_call_made_at_hq_is_recorded_at_the_till_and_closed_at_hq(chain):
    till, code = chain["till"], chain["code"]
    hq = HqConfig(mqtt=chain["mosquitto"].hq_settings("hq-cli"))
    zhang = member_svc.by_phone(till, ZHANG).id
    db = HqMember._meta.database
    for staff, name, role in (("1001", "王收银", "cashier"), ("9001", "李店长", "manager")):
        assert push_changes(hq, hq_staff.add_staff(db, staff, name, code, role, "hq-li", utcnow()))
    _, cashier = sign_in(till, "1001", "1234")
    req = {
        "member": {"card_no": "C0001"},
        "lines": [{"sku": "P0001", "qty": 1}],
        "tenders": [{"kind": "cash", "amount": 10000}],
    }
    sales.checkout(till, cashier, sales.CheckoutRequest.from_request(req))
    wait_until(
        lambda: (r := ReportMember.get_or_none(ReportMember.member_id == zhang)) and r.first_day,
        20,
        "the first purchase at HQ",
    )
    first_day = ReportMember.get_by_id(zhang).first_day
    sent: list = []
    made = tasks.make_tasks(db, first_day + dt.timedelta(days=7), utcnow(), sent)
    assert made["new_member"] == 1
    assert push_changes(hq, sent)
    wait_until(lambda: FollowUp.select().count() == 1, 20, "the call at the store")
    [call] = till_followups.member_calls(till, zhang)
    assert (call["kind"], call["staff_code"]) == ("new_member", "1001")

    outcome = {
        "outcome_id": "0193a0c4-1111-7222-8333-444455556666",
        "reached": True,
        "satisfaction": 2,
        "said": "洗发水还行",
        "complaint": "收银太慢",
    }
    till_followups.record_outcome(till, call["followup_id"], outcome, "1001")
    wait_until(
        lambda: HqFollowUp.get_by_id(call["followup_id"]).status == "done", 20, "closed at HQ"
    )
    assert "投诉" in HqMember.get_by_id(zhang).tags
    complaint = HqFollowUp.get(HqFollowUp.kind == "complaint")
    assert (complaint.store, complaint.staff_code) == (code, "9001")
    # down again: the closed call leaves the store, the manager's complaint call arrives
    wait_until(
        lambda: {(t.kind, t.staff_code) for t in FollowUp.select()} == {("complaint", "9001")},
        20,
        "the store's calls after HQ's answer",
    )
