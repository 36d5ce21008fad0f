"""Coupons at HQ (docs/programme/coupons.md): templates, issuing with limits and audit,
the CLI, and what the ingest does with a till's coupons: a coupon a till issued, a sale
that redeemed one (verified and marked used), a coupon redeemed offline at two stores
(the second sale posts, an exception opens), a full return gives it back.

The items are the ones a real till writes (edge services on their own SQLite file),
fed to the real ingest (``ingest_batch``) on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from core import protocol as p
from core.ids import uuid7
from edge.models import Outbox
from edge.services import coupons as coupon_svc
from edge.services import members as member_svc
from edge.services import sales
from edge.services.context import open_till
from edge.services.staff import sign_in
from edge.sync.apply import apply_page, ensure_sync_tables
from hq.audit import entries
from hq.changes import ChangeSet, coupon_state
from hq.cli import main
from hq.ingest import ingest_batch
from hq.members import register_member
from hq.models import (
    AuditEntry,
    ChangeRecord,
    Coupon,
    DeadLetter,
    HqException,
    Member,
    Product,
    Sale,
    bind,
    utcnow,
)
from hq.models import CouponTemplate as TemplateRow
from hq.programme.coupons import add_template, issue_coupons, template_state
from tests.edge.conftest import CN, Clock, make_config

NOW = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
MANAGER = {"code": "9001", "pin": "9999"}
TEN_OFF_100 = {"id": "TEN100", "name": "满100减10", "kind": "amount", "amount": 1000,
               "min_spend": 10000, "valid_days": 30, "per_member_limit": 2}  # fmt: skip
FLOOR = {"coupons": {"mode": "floor_limit", "daily_limit": 5}}


def hq_member(db, phone: str = "13100000001") -> str:
    member_id = uuid7()
    with db.atomic():
        register_member(
            db,
            {"member_id": member_id, "name": "王五", "phone": phone,
             "registered_at": "2026-11-23T09:00:00+08:00"},
            "S009", 1, utcnow(), ChangeSet(),
        )  # fmt: skip
    return member_id


# ---- a real till, its items fed to the real ingest ------------------------------------


class Store:
    def __init__(self, tmp_path, code: str) -> None:
        self.code = code
        self.till = open_till(
            make_config(tmp_path / code, store={"code": code}, offline=FLOOR),
            clock=Clock(dt.datetime(2026, 11, 23, 10, 0, tzinfo=CN)),
            create_key=True,
        )
        ensure_sync_tables(self.till.db)
        from edge.demo_data import load_demo

        load_demo(self.till, members=2)
        self.sent = 0
        self.down = 0

    def rebind(self) -> None:
        from edge.models import MODELS

        self.till.db.bind(MODELS)

    def items(self) -> list[dict]:
        self.rebind()
        rows = Outbox.select().where(Outbox.seq > self.sent).order_by(Outbox.seq)
        return [json.loads(r.payload) for r in rows]

    def push(self, items: list[dict] | None = None) -> p.Ack:
        """Send the outbox items not yet sent (or ``items``) to HQ in one batch."""
        items = self.items() if items is None else items
        outcome = ingest_batch(
            Member._meta.database,
            p.up_topic(self.code, "tx"),
            self.code,
            p.make_batch(self.code, 1, items),
            NOW,
        )
        assert outcome.ack is not None, outcome.dead_letter
        self.sent = max([self.sent] + [i["seq"] for i in items])
        return outcome.ack

    def receive(self, entity: str, key: str, data: dict) -> None:
        self.rebind()
        self.down += 1
        change = p.Change(self.down, entity, key, "upsert", data)
        page = p.ChangePage(self.down, self.down, (change,), False, self.down)
        apply_page(self.till.db, self.code, self.till.keys, page, "2026-11-23T10:00:00+08:00")

    def member(self, card: str = "C0001"):
        self.rebind()
        return member_svc.by_card(card)

    def sell(self, codes, lines=None, sale_id=None) -> dict:
        self.rebind()
        staff = sign_in(self.till, "1001", "1234")[1]
        req = {
            "member": {"card_no": "C0001"},
            "lines": lines or [{"sku": "P0010", "qty": 2}],
            "tenders": [{"kind": "cash", "amount": 500000}],
            "coupons": list(codes),
        }
        return sales.checkout(self.till, staff, sales.CheckoutRequest.from_request(req))

    def give_back(self, sale_id: str, lines=None) -> dict:
        self.rebind()
        staff = sign_in(self.till, "1001", "1234")[1]
        return sales.return_sale(self.till, staff, sale_id, lines, MANAGER)

    def close(self) -> None:
        self.till.db.close()


@pytest.fixture
def hq(hq_db):
    bind(hq_db, create=False)
    add_template(hq_db, TEN_OFF_100, by="hq-li", now=NOW)
    return hq_db


@pytest.fixture
def store(tmp_path, hq, store_code):
    s = Store(tmp_path, store_code)
    s.receive("coupon_template", "TEN100", template_state(TemplateRow.get_by_id("TEN100")))
    s.push()  # the demo members' registrations
    yield s
    s.close()


def rebind_hq(db) -> None:
    bind(db, create=False)


def send_coupon(store: Store, code: str) -> None:
    store.receive("coupon", code, coupon_state(Coupon.get_by_id(code)))


# ---- templates and issuing ------------------------------------------------------------


def test_issue_respects_the_per_member_limit_and_is_audited(hq):
    one, two = hq_member(hq, "13100000001"), hq_member(hq, "13100000002")
    codes = issue_coupons(hq, "TEN100", [one, two, one, one], by="hq-li", source="hq",
                          ref="双十一", now=NOW)  # fmt: skip
    assert len(codes) == 3  # the limit is 2: the third for ``one`` is skipped
    assert len(set(codes)) == 3 and all(len(c) == 12 for c in codes)
    held = {c.member_id: 0 for c in Coupon.select()}
    for c in Coupon.select():
        held[c.member_id] += 1
        assert (c.template_id, c.source, c.ref, c.status) == ("TEN100", "hq", "双十一", "issued")
        assert (c.valid_from, c.expires_on) == (dt.date(2026, 11, 23), dt.date(2026, 12, 22))
    assert held == {one: 2, two: 1}
    audit = entries(hq, action="coupon.issue")
    assert sorted(a["target"] for a in audit) == sorted(codes)
    assert {a["actor"] for a in audit} == {"hq-li"}
    sent = ChangeRecord.select().where(ChangeRecord.entity == "coupon").count()
    assert sent == 3
    assert ChangeRecord.select().where(ChangeRecord.entity == "coupon_template").count() == 1


@pytest.mark.parametrize(
    ("template", "by", "field"),
    [("NOPE", "hq-li", "template"), ("TEN100", "", "by")],
)
def test_issue_refusals(hq, template, by, field):
    from core.errors import HuiyuanError

    member = hq_member(hq)
    with pytest.raises(HuiyuanError) as err:
        issue_coupons(hq, template, [member], by=by, source="hq", ref=None, now=NOW)
    assert err.value.field == field
    assert Coupon.select().count() == 0 and AuditEntry.select().count() == 1  # the template's


def test_cli_template_add_list_and_issue(hq, hq_db_url, tmp_path, mosquitto):
    runner = CliRunner()
    base = ["--database-url", hq_db_url, *mosquitto.cli_args("hq")]
    added = runner.invoke(main, [*base, "coupon-template", "add", "--id", "OIL20", "--name",
                                 "粮油8折", "--kind", "percent", "--off-permille", "200",
                                 "--category", "grain_oil", "--valid-days", "7", "--by", "hq-li",
                                 "--no-push"])  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "8折" in added.output
    bad = runner.invoke(main, [*base, "coupon-template", "add", "--id", "X", "--name", "x",
                               "--kind", "amount", "--by", "hq-li", "--no-push"])  # fmt: skip
    assert bad.exit_code != 0 and "amount" in bad.output
    listed = runner.invoke(main, [*base, "coupon-template", "list", "--json"])
    assert {t["id"] for t in json.loads(listed.output)} == {"TEN100", "OIL20"}
    rebind_hq(hq)
    one, two = hq_member(hq, "13100000001"), hq_member(hq, "13100000002")
    members = tmp_path / "members.txt"
    members.write_text(f"{one}\n{two}\n")
    issued = runner.invoke(main, [*base, "issue-coupons", "OIL20", "--members-file",
                                  str(members), "--by", "hq-wang", "--no-push"])  # fmt: skip
    assert issued.exit_code == 0, issued.output
    rebind_hq(hq)
    codes = [ln for ln in issued.stdout.splitlines() if ln]
    assert len(codes) == 2 and Coupon.select().where(Coupon.template_id == "OIL20").count() == 2
    assert entries(hq, action="coupon.issue", actor="hq-wang")
    missing = runner.invoke(main, [*base, "issue-coupons", "OIL20", "--by", "hq-wang"])
    assert missing.exit_code != 0


# ---- what the stores send -------------------------------------------------------------


def test_a_coupon_issued_at_a_till_is_applied_at_hq_once(store, hq):
    member = store.member()
    with store.till.db.atomic():
        code = coupon_svc.issue_at_till(
            store.till, member.id, "TEN100", source="gift", ref="registration", cashier="1001"
        )["code"]
    items = store.items()
    assert store.push(items).rejected == ()
    rebind_hq(hq)
    coupon = Coupon.get_by_id(code)
    assert (coupon.member_id, coupon.template_id, coupon.source) == (member.id, "TEN100", "gift")
    assert coupon.issued_store == store.code
    audit = entries(hq, action="coupon.issue", target=code)
    assert audit[0]["actor"] == f"store:{store.code}/staff:1001"
    # the same coupon again (a resend under a new item id): nothing more happens
    again = dict(items[-1], id=uuid7(), seq=items[-1]["seq"] + 1)
    assert store.push([again]).rejected == ()
    rebind_hq(hq)
    assert Coupon.select().count() == 1 and len(entries(hq, action="coupon.issue")) == 1


def test_a_till_coupon_past_the_limit_stands_with_an_exception(store, hq):
    member = store.member()
    rebind_hq(hq)
    issue_coupons(hq, "TEN100", [member.id] * 2, by="hq-li", source="hq", ref=None, now=NOW)
    # the till has not heard of HQ's two yet: it issues a third
    with store.till.db.atomic():
        coupon_svc.issue_at_till(store.till, member.id, "TEN100", source="till", ref=None,
                                 cashier="1001")  # fmt: skip
    assert store.push().rejected == ()
    rebind_hq(hq)
    exc = HqException.get(HqException.kind == "coupon_over_limit")
    assert exc.member_id == member.id and exc.amount == 1000
    assert Coupon.select().count() == 3


def test_a_till_coupon_of_an_unknown_template_or_wrong_dates_is_refused(store, hq):
    member = store.member()
    with store.till.db.atomic():
        coupon_svc.issue_at_till(store.till, member.id, "TEN100", source="till", ref=None,
                                 cashier="1001")  # fmt: skip
    item = store.items()[-1]
    wrongs = [("template_id", "NOPE", "template"), ("expires_on", "2027-12-31", "有效期")]
    for n, (key, value, why) in enumerate(wrongs):
        bad = json.loads(json.dumps(item))
        bad["body"][key] = value
        bad.update(seq=item["seq"] + n, id=uuid7())
        ack = store.push([bad])
        assert ack.rejected and why in ack.rejected[0].reason
    rebind_hq(hq)
    assert Coupon.select().count() == 0
    assert DeadLetter.select().count() >= 2


def test_a_sale_with_a_coupon_is_verified_and_marks_it_used(store, hq):
    member = store.member()
    rebind_hq(hq)
    [code] = issue_coupons(hq, "TEN100", [member.id], by="hq-li", source="hq", ref=None, now=NOW)
    send_coupon(store, code)
    sale = store.sell([code])
    assert sale["sale"]["coupon_discount"] == 1000
    assert store.push().rejected == ()
    rebind_hq(hq)
    coupon = Coupon.get_by_id(code)
    assert (coupon.status, coupon.used_sale, coupon.used_store) == (
        "used",
        sale["sale_id"],
        store.code,
    )
    assert Sale.get(Sale.sale_id == sale["sale_id"]).total == 15020
    assert HqException.select().count() == 0
    last = ChangeRecord.select().where(ChangeRecord.key == code).order_by(ChangeRecord.seq.desc())
    assert last.first().data["status"] == "used"


@pytest.mark.parametrize(
    ("tamper", "field"),
    [
        (lambda b: b["coupons"][0].update(discount=2000), "coupons"),
        (lambda b: b["pricing_input"]["coupons"][0]["template"].update(name="改过"), "template"),
        (lambda b: b["pricing_input"]["coupons"][0]["template"].update(amount=5000), "total"),
        (lambda b: b["coupons"][0].update(code="OTHERCODE"), "coupons"),
        (lambda b: b.update(coupon_discount=0), "coupons"),
    ],
)
def test_a_sale_whose_coupons_do_not_add_up_is_refused(store, hq, tamper, field):
    member = store.member()
    rebind_hq(hq)
    [code] = issue_coupons(hq, "TEN100", [member.id], by="hq-li", source="hq", ref=None, now=NOW)
    send_coupon(store, code)
    store.sell([code])
    item = store.items()[-1]
    tamper(item["body"])
    ack = store.push([item])
    assert [r.seq for r in ack.rejected] == [item["seq"]], ack
    assert field in ack.rejected[0].reason
    rebind_hq(hq)
    assert Coupon.get_by_id(code).status == "issued"
    assert Sale.select().where(Sale.store == store.code).count() == 0


def test_a_coupon_redeemed_offline_at_two_stores(store, hq, tmp_path):
    """The first sale HQ applies takes the coupon; the second still posts (the goods left
    the store) and opens a coupon_double_use exception; neither store is blocked."""
    member = store.member()
    rebind_hq(hq)
    [code] = issue_coupons(hq, "TEN100", [member.id], by="hq-li", source="hq", ref=None, now=NOW)
    send_coupon(store, code)
    first = store.sell([code])
    items = store.items()
    # the same member's coupon redeemed at another store while both were offline: the
    # other store's sale is this one under its own sale id, store and seq
    other_store = f"{store.code}b"
    twin = json.loads(json.dumps(items[-1]))
    twin_id = uuid7()
    body = twin["body"]
    body["sale_id"] = twin_id
    if body.get("points_lot"):
        body["points_lot"]["lot_id"] = f"{twin_id}:earn"
    twin.update(store=other_store, seq=1, id=uuid7())
    other = ingest_batch(
        Member._meta.database, p.up_topic(other_store, "tx"), other_store,
        p.make_batch(other_store, 1, [twin]), NOW,
    )  # fmt: skip
    assert other.ack is not None and other.ack.rejected == ()
    assert store.push(items).rejected == ()  # the first store's sale arrives second
    rebind_hq(hq)
    coupon = Coupon.get_by_id(code)
    assert (coupon.used_sale, coupon.used_store) == (twin_id, other_store)
    exc = HqException.get(HqException.kind == "coupon_double_use")
    assert (exc.store, exc.ref, exc.amount, exc.member_id) == (store.code, code, 1000, member.id)
    assert exc.details["sale_id"] == first["sale_id"]
    # both sales posted as sold, points and all
    assert Sale.select().where(Sale.sale_id.in_([twin_id, first["sale_id"]])).count() == 2
    points = Member.get_by_id(member.id).points
    assert points == 2 * first["sale"]["points_earned"]


def test_a_full_return_gives_the_coupon_back_at_hq_and_a_partial_one_does_not(store, hq):
    member = store.member()
    rebind_hq(hq)
    [code] = issue_coupons(hq, "TEN100", [member.id], by="hq-li", source="hq", ref=None, now=NOW)
    send_coupon(store, code)
    sale = store.sell([code], lines=[{"sku": "P0010", "qty": 2}, {"sku": "P0001"}])
    store.give_back(sale["sale_id"], [(1, 1)])
    assert store.push().rejected == ()
    rebind_hq(hq)
    assert Coupon.get_by_id(code).status == "used"
    store.give_back(sale["sale_id"])
    assert store.push().rejected == ()
    rebind_hq(hq)
    coupon = Coupon.get_by_id(code)
    assert (coupon.status, coupon.used_sale) == ("issued", None)


def test_a_return_claiming_coupons_back_early_is_refused(store, hq):
    member = store.member()
    rebind_hq(hq)
    [code] = issue_coupons(hq, "TEN100", [member.id], by="hq-li", source="hq", ref=None, now=NOW)
    send_coupon(store, code)
    sale = store.sell([code], lines=[{"sku": "P0010", "qty": 2}, {"sku": "P0001"}])
    store.give_back(sale["sale_id"], [(1, 1)])
    items = store.items()
    items[-1]["body"]["coupons_restored"] = [code]
    ack = store.push(items)
    assert [r.seq for r in ack.rejected] == [items[-1]["seq"]]
    assert "部分退货不退券" in ack.rejected[0].reason
    rebind_hq(hq)
    assert Coupon.get_by_id(code).status == "used"


def test_the_snapshot_carries_templates_and_coupons_a_new_store_can_price(hq, tmp_path):
    from edge.sync.apply import load_snapshot
    from hq.changes import snapshot_records
    from tests.lookup_keys import TEST_LOOKUP

    store = Store(tmp_path, "SNAP1")  # its demo members are its own, unknown to HQ
    member = store.member()
    rebind_hq(hq)
    with hq.atomic():
        register_member(
            hq,
            {"member_id": member.id, "name": "张三", "phone": "13800000001",
             "registered_at": "2026-11-23T09:00:00+08:00"},
            "SNAP1", 1, utcnow(), ChangeSet(),
        )  # fmt: skip
    [code] = issue_coupons(hq, "TEN100", [member.id], by="hq-li", source="hq", ref=None, now=NOW)
    with hq.atomic():
        cursor, records = snapshot_records(hq, TEST_LOOKUP)
        wanted = [r for r in records if r["entity"] in ("coupon_template", "coupon")]
    assert [(r["entity"], r["key"]) for r in wanted] == [
        ("coupon", code),
        ("coupon_template", "TEN100"),
    ]
    store.rebind()
    load_snapshot(
        store.till.db, "SNAP1", store.till.keys, wanted, cursor, "2026-11-23T10:00:00+08:00"
    )
    assert [c["code"] for c in coupon_svc.member_coupons(store.till, member.id)] == [code]
    assert store.sell([code])["sale"]["coupon_discount"] == 1000
    store.close()


def test_a_category_hq_files_otherwise_opens_an_exception_and_the_sale_posts(store, hq):
    rebind_hq(hq)
    Product.create(sku="P0010", name="五常大米 5kg", unit_price=8900, data={"category": "rice"})
    store.rebind()
    from edge.models import Product as TillProduct

    TillProduct.update(category="grain_oil").where(TillProduct.sku == "P0010").execute()
    member = store.member()
    rebind_hq(hq)
    [code] = issue_coupons(hq, "TEN100", [member.id], by="hq-li", source="hq", ref=None, now=NOW)
    send_coupon(store, code)
    sale = store.sell([code])
    assert store.push().rejected == ()
    rebind_hq(hq)
    exc = HqException.get(HqException.kind == "coupon_category")
    assert exc.ref == sale["sale_id"] and exc.amount == 1000
    assert exc.details["lines"] == [{"sku": "P0010", "till": "grain_oil", "hq": "rice"}]
    assert Coupon.get_by_id(code).status == "used"


@pytest.mark.parametrize(
    ("valid_from", "expires_on", "code"),
    [
        ("2026-11-24", "2026-12-31", "coupon_unusable"),  # not yet valid
        ("2026-11-01", "2026-11-22", "coupon_unusable"),  # expired
        ("2026-11-23", "2026-11-23", "approved"),  # its one day
    ],
)
def test_the_online_hold_judges_the_coupons_dates(hq, valid_from, expires_on, code):
    from core.protocol import AuthRequest
    from hq.auth import authorize_spend

    member = hq_member(hq)
    Coupon.create(code="CPN1", member_id=member, value=1000, template_id="TEN100",
                  valid_from=dt.date.fromisoformat(valid_from),
                  expires_on=dt.date.fromisoformat(expires_on))  # fmt: skip
    answer, _ = authorize_spend(hq, AuthRequest("S1", uuid7(), member, coupons=("CPN1",)), NOW)
    assert (answer.code or answer.status) == code


def test_a_coupon_issued_in_the_chains_morning_counts_from_the_chains_day(hq):
    """At 23:30 UTC it is already the next morning in Shanghai: a template valid 30 days
    from issue runs from the chain's day, not the UTC date."""
    member = hq_member(hq, "13100000031")
    late = dt.datetime(2026, 11, 23, 23, 30)
    [code] = issue_coupons(hq, "TEN100", [member], by="hq-li", source="hq", ref=None,
                           now=late, today=dt.date(2026, 11, 24))  # fmt: skip
    coupon = Coupon.get_by_id(code)
    assert (coupon.valid_from, coupon.expires_on) == (dt.date(2026, 11, 24), dt.date(2026, 12, 23))
