"""End to end through a real broker (docs/programme/coupons.md): HQ adds a template and
issues a coupon with its CLI, the store receives both, the cashier redeems the coupon
online (HQ holds it), HQ marks it used when the sale arrives and says so to the store,
and a full return gives it back at the store and at HQ."""

from __future__ import annotations

import json

from click.testing import CliRunner

from edge.models import SyncCoupon
from edge.services import coupons as coupon_svc
from edge.services import sales
from hq.cli import main as hq_cli
from hq.models import Authorization, Coupon, bind
from hq.models import Member as HqMember
from tests.sync.helpers import issue_ten_off_coupon, wait_until
from tests.sync.test_authorization import chain  # noqa: F401  (the fixture)

MANAGER = {"code": "9001", "pin": "9999"}


def coupon_at_store(code: str) -> str | None:
    row = SyncCoupon.get_or_none(SyncCoupon.code == code)
    return row.status if row else None


def test_issue_redeem_online_and_return_through_the_broker(chain, hq_db_url):  # noqa: F811
    till, staff, zhang = chain["till"], chain["staff"], chain["zhang"]
    db = HqMember._meta.database
    cli = ["--database-url", hq_db_url, *chain["mosquitto"].cli_args("hq")]
    runner = CliRunner()
    code = issue_ten_off_coupon(hq_db_url, chain["mosquitto"], zhang, "e2e")
    listed = coupon_svc.member_coupons(till, zhang)
    assert [c["code"] for c in listed] == [code] and listed[0]["gives"] == "满100元减10元"

    req = {
        "member": {"card_no": "C0001"},
        "lines": [{"sku": "P0010", "qty": 2}],
        "tenders": [{"kind": "cash", "amount": 20000}],
        "coupons": [code],
    }
    sale = sales.checkout(till, staff, sales.CheckoutRequest.from_request(req))
    assert sale["offline"] is False and sale["sale"]["coupon_discount"] == 1000
    auth = Authorization.get(Authorization.sale_id == sale["sale_id"])
    assert auth.coupons == [code]
    wait_until(lambda: Coupon.get_by_id(code).used_sale == sale["sale_id"], 20, "used at HQ")
    assert Coupon.get_by_id(code).status == "used"
    wait_until(lambda: coupon_at_store(code) == "used", 20, "HQ's word at the store")
    assert coupon_svc.member_coupons(till, zhang) == []

    back = sales.return_sale(till, staff, sale["sale_id"], None, MANAGER)
    assert back["return"]["coupons_restored"] == [code]
    wait_until(lambda: Coupon.get_by_id(code).status == "issued", 20, "given back at HQ")
    wait_until(lambda: coupon_at_store(code) == "issued", 20, "given back at the store")
    assert [c["code"] for c in coupon_svc.member_coupons(till, zhang)] == [code]
    listed = json.loads(runner.invoke(hq_cli, [*cli, "coupon-template", "list", "--json"]).output)
    bind(db, create=False)
    assert [t["id"] for t in listed] == ["TEN100"]
