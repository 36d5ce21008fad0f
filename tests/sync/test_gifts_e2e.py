"""A goods gift end to end (docs/programme/points.md): HQ publishes the catalogue and a
points adjustment, the store receives both, the cashier redeems the gift with HQ's online
authorization, HQ applies the redemption against its catalogue, and both sides agree."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from core.errors import InsufficientFunds
from edge.demo_data import load_demo
from edge.models import Gift as EdgeGift
from edge.services import members as member_svc
from edge.services import points as points_svc
from edge.services.context import open_till
from edge.services.staff import sign_in
from edge.sync.agent import SyncAgent
from edge.sync.authorizer import MqttAuthorizer
from hq.models import Authorization, GiftRedemption, LedgerEntry
from hq.models import Member as HqMember
from hq.programme.points import add_gift, adjust_points
from hq.reconcile import hq_ledger_differences
from hq.worker import publish_changes
from tests.edge.conftest import make_config
from tests.sync.conftest import new_code, start_worker
from tests.sync.helpers import ledger_mismatches, wait_until

ZHANG = "13800000001"


@pytest.fixture
def chain(tmp_path, own_mosquitto, hq_db_url) -> Iterator[dict]:
    worker = start_worker(hq_db_url, own_mosquitto)
    code = new_code("G")
    # the online holds here test what HQ holds, not the 1.5 s budget (tests/sync/
    # test_authorization.py does): 5 s, so a busy 2-core box does not turn a hold into a
    # refusal
    cfg = own_mosquitto.sync_config(code, ack_timeout=1.0, auth_timeout=5.0)
    authorizer = MqttAuthorizer(code, cfg).start(wait=5)
    till = open_till(
        make_config(tmp_path, store={"code": code}), authorizer=authorizer, create_key=True
    )
    load_demo(till, members=2)
    agent = SyncAgent(till, cfg).start()
    zhang = member_svc.by_phone(till, ZHANG)
    _, staff = sign_in(till, "1001", "1234")
    wait_until(lambda: HqMember.get_or_none(HqMember.id == zhang.id), 20, "张三 at HQ")
    wait_until(lambda: authorizer.hq_online, 10, "HQ state seen by the authorizer")
    yield {"till": till, "staff": staff, "zhang": zhang.id, "worker": worker}
    agent.stop()
    authorizer.stop()
    till.db.close()
    worker.stop()


def till_points(chain: dict) -> int:
    till = chain["till"]
    member = member_svc.resolve(chain["zhang"])
    return member_svc.points_balance(member.id, till.now().date()) - member.points_debt


def test_a_goods_gift_from_catalogue_to_redemption_and_back(chain):
    worker, till, zhang = chain["worker"], chain["till"], chain["zhang"]
    db = worker.db
    _, changes = add_gift(
        db, "G1", name="保温杯", points=500, kind="goods", sku="P0001", by="hq-alice"
    )
    publish_changes(worker.client, changes, worker.lookup)  # as the CLI's push does
    start = till_points(chain)
    today = dt.date.today()
    out = adjust_points(db, zhang, 2000, by="hq-alice", reason="活动补偿", today=today)
    publish_changes(worker.client, out["changes"], worker.lookup)
    wait_until(lambda: EdgeGift.get_or_none(EdgeGift.gift_id == "G1"), 20, "the gift at the store")
    wait_until(lambda: till_points(chain) == start + 2000, 20, "the points at the store")

    done = points_svc.redeem_gift(till, chain["staff"], zhang, "G1", 2, redemption_id="R-e2e")
    assert done["offline"] is False and done["redemption"]["authorization_id"]
    assert till_points(chain) == start + 1000

    wait_until(
        lambda: GiftRedemption.get_or_none(GiftRedemption.redemption_id == "R-e2e"),
        20,
        "the redemption at HQ",
    )
    hq_member = HqMember.get_by_id(zhang)
    assert hq_member.points == start + 1000
    rows = LedgerEntry.select().where((LedgerEntry.reason == "gift") & (LedgerEntry.ref == "R-e2e"))
    assert sum(r.points for r in rows) == -1000
    assert Authorization.get(Authorization.sale_id == "R-e2e").status == "settled"
    assert hq_ledger_differences(db) == []
    # HQ's echo of the member leaves the store's figure where it was
    wait_until(
        lambda: (
            member_svc.resolve(zhang).updated_at is not None and till_points(chain) == start + 1000
        ),
        10,
        "the store's balance after HQ's echo",
    )
    assert ledger_mismatches(till.store, till.now().date()) == []

    # HQ counts the spent points: a redemption beyond what is left is declined online
    with pytest.raises(InsufficientFunds, match="总部拒绝授权"):
        points_svc.redeem_gift(till, chain["staff"], zhang, "G1", (start + 1000) // 500 + 1)


def test_a_coupon_gift_issues_a_coupon_that_hq_knows_and_a_sale_then_uses(chain):
    """A gift of kind coupon (points part) issues through the coupons part at the till
    (``issue_at_till``, in the redemption's transaction); HQ applies both items, holds the
    coupon as the member's (source ``gift``), and a later sale redeems it chain-wide."""
    from edge.models import CouponTemplate as EdgeTemplate
    from edge.models import Outbox
    from edge.services import sales
    from hq.models import Coupon
    from hq.programme.coupons import add_template

    worker, till, zhang = chain["worker"], chain["till"], chain["zhang"]
    db = worker.db
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    template = {"id": "GIFT10", "name": "兑换券10元", "kind": "amount", "amount": 1000,
                "valid_days": 30}  # fmt: skip
    add_template(db, template, by="hq-alice", now=now)
    _, changes = add_gift(db, "CP", name="10元券", points=300, kind="coupon",
                          coupon_template="GIFT10", by="hq-alice")  # fmt: skip
    start = till_points(chain)
    out = adjust_points(db, zhang, 1000, by="hq-alice", reason="活动补偿", today=dt.date.today())
    publish_changes(worker.client, changes + out["changes"], worker.lookup)
    wait_until(lambda: EdgeGift.get_or_none(EdgeGift.gift_id == "CP"), 20, "the gift at the store")
    wait_until(lambda: EdgeTemplate.get_or_none(EdgeTemplate.id == "GIFT10"), 20, "the template")
    # and the points: the gift and template can be applied before them (a loaded full run
    # once redeemed with no points at the store yet)
    wait_until(lambda: till_points(chain) == start + 1000, 20, "the points at the store")

    done = points_svc.redeem_gift(till, chain["staff"], zhang, "CP", 1, redemption_id="R-cp")
    [code] = done["coupon_codes"]
    wait_until(lambda: Coupon.get_or_none(Coupon.code == code), 20, "the coupon at HQ")
    coupon = Coupon.get_by_id(code)
    assert (coupon.member_id, coupon.status, coupon.source) == (zhang, "issued", "gift")
    assert GiftRedemption.get_by_id("R-cp").points == 300
    assert hq_ledger_differences(db) == []
    # HQ has acknowledged everything the store sent (its worker is idle again: the online
    # hold of the coupon below has its usual 1.5 s budget)
    wait_until(
        lambda: not Outbox.select().where(Outbox.acked == False).exists(),  # noqa: E712
        20,
        "the store's outbox drained",
    )

    req = {
        "member": {"card_no": "C0001"},
        "lines": [{"sku": "P0010", "qty": 1}],
        "tenders": [{"kind": "cash", "amount": 20000}],
        "coupons": [code],
    }
    sale = sales.checkout(till, chain["staff"], sales.CheckoutRequest.from_request(req))
    assert sale["sale"]["coupon_discount"] == 1000
    wait_until(lambda: Coupon.get_by_id(code).status == "used", 20, "the coupon used at HQ")
    assert Coupon.get_by_id(code).used_sale == sale["sale_id"]
