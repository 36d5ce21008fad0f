"""HQ's staff registry, maintainer transfers with their approvals, handover on leaving, and
the figures crediting sales to staff (docs/programme/staff.md), on SQLite and PostgreSQL.

Items from the tills go through the real ingest (``ingest_batch``)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from core import protocol as p
from core.errors import Conflict, NotFound, ValidationError
from core.ids import uuid7
from hq.audit import entries
from hq.changes import snapshot_records
from hq.ingest import ingest_batch
from hq.lookup import chain_lookup
from hq.models import (
    AuditEntry,
    ChangeRecord,
    HqException,
    MaintainerTransfer,
    Member,
    Product,
    Sale,
    StaffMember,
)
from hq.programme import staff as programme
from hq.rules import publish_product
from tests.hq.edge_sim import Items

NOW = dt.datetime(2026, 11, 27, 2, 0)  # naive UTC, as HQ keeps it
S1, S2 = "S1", "S2"


def ingest(db, store: str, items: list[dict]) -> p.Ack:
    outcome = ingest_batch(
        db,
        p.up_topic(store, "tx"),
        store,
        p.make_batch(store, 1, items),
        NOW.replace(tzinfo=dt.UTC),
    )
    assert outcome.ack is not None, outcome.dead_letter
    return outcome.ack


def phone(n: int) -> str:
    return f"139{n:08d}"


def changes_of(entity: str) -> list[ChangeRecord]:
    return list(
        ChangeRecord.select().where(ChangeRecord.entity == entity).order_by(ChangeRecord.seq)
    )


@pytest.fixture
def registry(hq_db):
    """E01, E02 at S1 and E09 at S2."""
    for code, name, store in (("E01", "王芳", S1), ("E02", "李娜", S1), ("E09", "赵磊", S2)):
        programme.add_staff(hq_db, code, name, store, "guide", "hq-admin", NOW)
    return hq_db


def members_of(db, items: Items, code: str, n: int, first: int = 0) -> list[str]:
    ids = [uuid7() for _ in range(n)]
    ack = ingest(
        db,
        items.store,
        [items.registration(m, phone(first + i), staff_code=code) for i, m in enumerate(ids)],
    )
    assert ack.rejected == ()
    return ids


def maintainer(member_id: str) -> str | None:
    return Member.get_by_id(member_id).staff_code


def decision(items: Items, transfer_id: str, decision: str, reason: str = "") -> dict:
    return items._item(
        "staff_decision",
        {
            "transfer_id": transfer_id,
            "decision": decision,
            "decided_at": "2026-11-27T10:05:00+08:00",
            "approved_by": "9001",
            "cashier": "1001",
            "reason": reason,
        },
    )


# ---- the registry -------------------------------------------------------------------


def test_staff_are_registered_sent_down_without_pins_and_in_the_snapshot(registry):
    sent = {c.key: c.data for c in changes_of("staff")}
    assert sent["E01"] == {
        "code": "E01",
        "name": "王芳",
        "store": S1,
        "role": "guide",
        "status": "active",
    }
    assert set(sent) == {"E01", "E02", "E09"}
    _, records = snapshot_records(registry, chain_lookup(None))
    snap = {r["key"]: r["data"] for r in records if r["entity"] == "staff"}
    assert snap == sent
    assert [e["action"] for e in entries(registry, action="staff.add")] == ["staff.add"] * 3
    listed = programme.list_staff(S1)
    assert [(r["code"], r["members"]) for r in listed] == [("E01", 0), ("E02", 0)]


@pytest.mark.parametrize(
    ("code", "name", "store", "role", "field"),
    [
        ("E01", "重复", S1, "guide", "code"),  # exists
        ("", "空", S1, "guide", "code"),
        ("E 10", "空格", S1, "guide", "code"),
        ("E10", "", S1, "guide", "name"),
        ("E10", "无店", "", "guide", "store"),
        ("E10", "岗位", S1, "boss", "role"),
    ],
)
def test_a_bad_staff_member_is_refused_by_field(registry, code, name, store, role, field):
    with pytest.raises((ValidationError, Conflict)) as caught:
        programme.add_staff(registry, code, name, store, role, "hq-admin", NOW)
    assert caught.value.field == field


# ---- registrations at HQ ------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "exception"),
    [("E01", None), ("X99", "unknown"), ("E02", "closed"), (None, None)],
)
def test_a_registration_keeps_its_maintainer_and_an_unknown_one_is_an_exception(
    registry, code, exception
):
    programme.close_staff(registry, "E02", "hq-admin", NOW)
    items = Items(S1)
    mid = uuid7()
    body = items.registration(mid, phone(1), staff_code=code)
    assert ingest(registry, S1, [body]).rejected == ()
    assert maintainer(mid) == code  # never blocked: the store's registration stands
    raised = list(HqException.select().where(HqException.kind == "unknown_maintainer"))
    if exception is None:
        assert raised == []
    else:
        assert [(e.member_id, e.store, e.details["staff_code"]) for e in raised] == [
            (mid, S1, code)
        ]
        assert raised[0].details["staff_status"] == (None if exception == "unknown" else "closed")


def test_with_no_registry_at_all_nothing_is_checked(hq_db):
    items = Items(S1)
    mid = uuid7()
    assert ingest(hq_db, S1, [items.registration(mid, phone(1), staff_code="ANY")]).rejected == ()
    assert HqException.select().count() == 0


# ---- transfers ----------------------------------------------------------------------


def test_a_transfer_within_a_store_needs_only_the_managers_approval_at_the_till(registry):
    items = Items(S1)
    ids = members_of(registry, items, "E01", 3)
    t = programme.request_transfer(registry, "E01", "E02", "王芳调岗", "hq-ops", NOW, ids[:2])
    assert (t.status, t.from_store, t.to_store) == ("pending", S1, S1)
    sent = changes_of("staff_transfer")[-1]
    assert (sent.key, sent.data["status"]) == (t.id, "pending")
    assert sent.data["member_ids"] == sorted(ids[:2])

    ack = ingest(registry, S1, [decision(items, t.id, "approve")])
    assert ack.rejected == ()
    assert [maintainer(m) for m in ids] == ["E02", "E02", "E01"]
    done = MaintainerTransfer.get_by_id(t.id)
    assert (done.status, done.moved, done.store_approved_by) == ("done", 2, "store:S1/staff:9001")
    assert changes_of("staff_transfer")[-1].data["status"] == "done"
    member_changes = {c.key: c.data["staff_code"] for c in changes_of("member")[-2:]}
    assert member_changes == {ids[0]: "E02", ids[1]: "E02"}
    audit_rows = AuditEntry.select().where(AuditEntry.target == t.id).order_by(AuditEntry.id)
    actions = [e.action for e in audit_rows]
    assert actions == ["maintainer.request", "maintainer.approve", "maintainer.move"]
    # the same decision again (a new item) finds it decided: refused, the store moves on
    again = ingest(registry, S1, [decision(items, t.id, "approve")])
    assert [r.seq for r in again.rejected] == [items.seq]


def test_a_transfer_across_stores_needs_the_store_manager_then_hq(registry):
    items = Items(S1)
    ids = members_of(registry, items, "E01", 2)
    t = programme.request_transfer(registry, "E01", "E09", "会员搬家到二店", "hq-ops", NOW)
    assert sorted(t.member_ids) == sorted(ids)
    with pytest.raises(Conflict) as caught:
        programme.approve_transfer(registry, t.id, "hq-boss", NOW)
    assert "店长审批" in caught.value.message
    assert ingest(registry, S1, [decision(items, t.id, "approve")]).rejected == ()
    assert MaintainerTransfer.get_by_id(t.id).status == "store_approved"
    assert [maintainer(m) for m in ids] == ["E01", "E01"]  # not yet: HQ approves across stores
    done = programme.approve_transfer(registry, t.id, "hq-boss", NOW)
    assert (done.status, done.moved, done.hq_approved_by) == ("done", 2, "hq-boss")
    assert [maintainer(m) for m in ids] == ["E09", "E09"]
    with pytest.raises(Conflict):  # once only
        programme.approve_transfer(registry, t.id, "hq-boss", NOW)
    approvals = AuditEntry.select().where(AuditEntry.action == "maintainer.approve")
    levels = [e.details["level"] for e in approvals.order_by(AuditEntry.id)]
    assert levels == ["store", "hq"]


def test_hq_may_give_the_store_step_too_and_it_is_audited_as_such(registry):
    items = Items(S1)
    ids = members_of(registry, items, "E01", 1)
    t = programme.request_transfer(registry, "E01", "E09", "店长休假", "hq-ops", NOW)
    done = programme.approve_transfer(registry, t.id, "hq-boss", NOW, for_store=True)
    assert (done.status, done.store_approved_by, maintainer(ids[0])) == ("done", "hq-boss", "E09")


def test_a_rejection_at_the_till_or_at_hq_moves_nobody(registry):
    items = Items(S1)
    ids = members_of(registry, items, "E01", 2)
    t1 = programme.request_transfer(registry, "E01", "E02", "试试", "hq-ops", NOW, ids[:1])
    assert ingest(registry, S1, [decision(items, t1.id, "reject", "会员不同意")]).rejected == ()
    r1 = MaintainerTransfer.get_by_id(t1.id)
    assert (r1.status, r1.rejected_reason) == ("rejected", "会员不同意")
    t2 = programme.request_transfer(registry, "E01", "E09", "再试", "hq-ops", NOW, ids[1:])
    with pytest.raises(ValidationError):
        programme.reject_transfer(registry, t2.id, "hq-boss", "  ", NOW)
    programme.reject_transfer(registry, t2.id, "hq-boss", "不合规", NOW)
    assert [maintainer(m) for m in ids] == ["E01", "E01"]
    assert len(entries(registry, action="maintainer.reject")) == 2


def test_another_stores_decision_is_refused(registry):
    items = Items(S1)
    members_of(registry, items, "E01", 1)
    t = programme.request_transfer(registry, "E01", "E02", "调岗", "hq-ops", NOW)
    other = Items(S2)
    ack = ingest(registry, S2, [decision(other, t.id, "approve")])
    assert [r.seq for r in ack.rejected] == [1]
    assert MaintainerTransfer.get_by_id(t.id).status == "pending"


@pytest.mark.parametrize(
    ("from_staff", "to_staff", "reason", "members", "error", "field"),
    [
        ("E01", "E02", "", None, ValidationError, "reason"),
        ("E01", "E01", "同一人", None, ValidationError, "to"),
        ("E01", "X99", "无此人", None, NotFound, "to"),
        ("X99", "E02", "无此人", None, NotFound, "from"),
        ("E02", "E01", "没有会员", None, ValidationError, "members"),
        ("E01", "E02", "不是他的", "other", ValidationError, "members"),
        ("E01", "E02", "不存在", "ghost", NotFound, "members"),
        ("E01", "E03", "离职中", None, Conflict, "to"),
    ],
)
def test_a_bad_transfer_request_is_refused_by_field(
    registry, from_staff, to_staff, reason, members, error, field
):
    programme.add_staff(registry, "E03", "要走的", S1, "guide", "hq-admin", NOW)
    programme.mark_leaving(registry, "E03", "hq-admin", NOW)
    items = Items(S1)
    members_of(registry, items, "E01", 1)
    others = members_of(registry, items, "E09", 1, first=50)
    given = {None: None, "other": others, "ghost": [uuid7()]}[members]
    with pytest.raises(error) as caught:
        programme.request_transfer(registry, from_staff, to_staff, reason, "hq-ops", NOW, given)
    assert caught.value.field == field


def test_a_member_in_an_open_transfer_is_not_asked_for_twice(registry):
    items = Items(S1)
    members_of(registry, items, "E01", 1)
    programme.request_transfer(registry, "E01", "E02", "一", "hq-ops", NOW)
    with pytest.raises(Conflict):
        programme.request_transfer(registry, "E01", "E09", "二", "hq-ops", NOW)


# ---- leaving --------------------------------------------------------------------------


def test_closing_is_refused_while_members_remain_and_a_handover_moves_them(registry):
    items = Items(S1)
    ids = members_of(registry, items, "E01", 3)
    programme.mark_leaving(registry, "E01", "hq-admin", NOW)
    with pytest.raises(Conflict) as caught:
        programme.close_staff(registry, "E01", "hq-admin", NOW)
    assert caught.value.field == "handover_to" and "3 位会员" in caught.value.message
    assert StaffMember.get_by_id("E01").status == "leaving"
    with pytest.raises(Conflict) as caught:  # a leaving staff member takes no members
        programme.close_staff(registry, "E02", "hq-admin", NOW, handover_to="E01")
    assert caught.value.field == "to" and StaffMember.get_by_id("E02").status == "active"
    programme.close_staff(registry, "E01", "hq-admin", NOW, handover_to="E02", reason="离职")
    assert [maintainer(m) for m in ids] == ["E02"] * 3
    assert StaffMember.get_by_id("E01").status == "closed"
    t = MaintainerTransfer.get()
    assert (t.status, t.from_staff, t.to_staff, t.moved) == ("done", "E01", "E02", 3)
    audit_rows = AuditEntry.select().where(AuditEntry.target == t.id).order_by(AuditEntry.id)
    actions = [e.action for e in audit_rows]
    assert actions == ["maintainer.request", "maintainer.approve", "maintainer.move"]
    assert changes_of("staff")[-1].data["status"] == "closed"
    with pytest.raises(Conflict):
        programme.close_staff(registry, "E01", "hq-admin", NOW)


def test_a_staff_member_without_members_closes_at_once(registry):
    programme.close_staff(registry, "E09", "hq-admin", NOW)
    assert StaffMember.get_by_id("E09").status == "closed"
    assert entries(registry, action="staff.close")[0]["target"] == "E09"


# ---- credit and margin --------------------------------------------------------------


def sale(items: Items, member_id: str | None, price: int, served_by: str | None = None) -> dict:
    item = items.sale(member_id, price)
    if served_by:
        item["body"]["served_by"] = served_by
    return item


def test_sales_are_credited_to_cashier_serving_staff_and_maintainer(registry):
    publish_product(registry, "6901234567890", "洗发水", 10000, category="日化", cost=6000)
    items = Items(S1)
    a, b = members_of(registry, items, "E01", 2)
    (c,) = members_of(registry, items, "E02", 1, first=10)
    ack = ingest(
        registry,
        S1,
        [
            sale(items, a, 10000, served_by="E02"),  # served by E02, maintained by E01
            sale(items, b, 20000),  # served by the cashier E01
            sale(items, c, 5000, served_by="E09"),
            sale(items, None, 3000, served_by="E02"),  # no member: no maintainer
        ],
    )
    assert ack.rejected == ()
    rows = [
        (s.cashier, s.served_by, s.maintainer, s.total) for s in Sale.select().order_by(Sale.seq)
    ]
    assert rows == [
        ("E01", "E02", "E01", 10000),
        ("E01", "E01", "E01", 20000),
        ("E01", "E09", "E02", 5000),
        ("E01", "E02", None, 3000),
    ]
    # a transfer changes who later sales credit, not earlier ones
    t = programme.request_transfer(registry, "E01", "E02", "调岗", "hq-ops", NOW, [a])
    ingest(registry, S1, [decision(items, t.id, "approve")])
    ingest(registry, S1, [sale(items, a, 1000)])
    assert Sale.select().order_by(Sale.seq.desc()).get().maintainer == "E02"

    figures = {r["code"]: r for r in programme.staff_sales()}
    e01, e02, e09 = figures["E01"], figures["E02"], figures["E09"]
    assert (e01["recruited"], e01["recruited_sales"], e01["recruited_total"]) == (2, 3, 31000)
    assert (e02["recruited"], e02["recruited_sales"], e02["recruited_total"]) == (1, 1, 5000)
    assert (e01["served_sales"], e01["served_total"]) == (2, 21000)
    assert (e02["served_sales"], e02["served_total"]) == (2, 13000)
    assert (e09["served_sales"], e09["served_total"]) == (1, 5000)
    assert (e01["maintained_sales"], e01["maintained_total"]) == (2, 30000)
    assert (e02["maintained_sales"], e02["maintained_total"]) == (2, 6000)
    assert e09["maintained_sales"] == 0 and e09["recruited"] == 0
    # a return of the sale E02 served to E01's member counts against both of them
    first = Sale.select().order_by(Sale.seq).first()
    returned = items.return_of(first.body, points_reversed=first.body["points_earned"])
    assert ingest(registry, S1, [returned]).rejected == ()
    figures = {r["code"]: r for r in programme.staff_sales()}
    assert figures["E02"]["served_refunded"] == 10000
    assert figures["E01"]["maintained_refunded"] == 10000
    assert figures["E01"]["recruited_refunded"] == 10000
    assert figures["E01"]["served_refunded"] == figures["E02"]["maintained_refunded"] == 0
    # the store and the period narrow the figures
    assert {r["code"] for r in programme.staff_sales(S2)} == {"E09"}
    assert programme.staff_sales(S2)[0]["served_sales"] == 0
    later = programme.Period(dt.date(2027, 1, 1), None)
    assert all(r["served_sales"] == 0 for r in programme.staff_sales(None, later))

    # margin: each line's category and cost as HQ's catalogue had them at the sale
    goods = Sale.select().order_by(Sale.seq).first().line_goods
    assert goods == [{"line_no": 1, "sku": "6901234567890", "category": "日化", "cost": 6000}]
    # net of the return above: its 10000 and its one unit's 6000 cost taken back
    margin = programme.category_margin()
    assert margin == [
        {"category": "日化", "amount": 29000, "cost": 24000, "margin": 5000, "uncosted": 0,
         "returned": 10000}
    ]  # fmt: skip
    # another return, of the 20000 sale: the category now sold below its cost
    second = Sale.select().order_by(Sale.seq).offset(1).first()
    back = items.return_of(second.body, points_reversed=second.body["points_earned"])
    assert ingest(registry, S1, [back]).rejected == ()
    assert programme.category_margin()[0] == {
        "category": "日化", "amount": 9000, "cost": 18000, "margin": -9000, "uncosted": 0,
        "returned": 30000,
    }  # fmt: skip
    # a period without those sales has none of their returns
    later = programme.category_margin(None, programme.Period(dt.date(2027, 1, 1), None))
    assert later == []


def test_a_sale_of_a_product_hq_does_not_know_has_no_cost(registry):
    items = Items(S1)
    ingest(registry, S1, [sale(items, None, 4000)])
    assert Sale.get().line_goods == [
        {"line_no": 1, "sku": "6901234567890", "category": "", "cost": None}
    ]
    assert programme.category_margin() == [
        {"category": "", "amount": 0, "cost": 0, "margin": 0, "uncosted": 4000, "returned": 0}
    ]


# ---- products: category and cost ----------------------------------------------------


@pytest.mark.parametrize(
    ("data", "stored", "field"),
    [
        ({"category": "日化", "cost": 1200}, {"category": "日化", "cost": 1200}, None),
        ({"category": " 药品 ", "cost": 0}, {"category": "药品", "cost": 0}, None),
        ({"cost": None}, {"cost": None}, None),
        ({"cost": ""}, {"cost": None}, None),
        ({}, {}, None),
        ({"cost": -1}, None, "cost"),
        ({"cost": 12.5}, None, "cost"),
        ({"cost": "12"}, None, "cost"),
        ({"cost": True}, None, "cost"),
        ({"category": 7}, None, "category"),
        ({"category": "类" * 33}, None, "category"),
    ],
)
def test_publish_product_checks_category_and_cost(hq_db, data, stored, field):
    if field is not None:
        with pytest.raises(ValidationError) as caught:
            publish_product(hq_db, "P1", "洗发水", 3990, **data)
        assert caught.value.field == field
        assert Product.get_or_none(Product.sku == "P1") is None
        return
    changes = publish_product(hq_db, "P1", "洗发水", 3990, **data)
    assert Product.get_by_id("P1").data == stored
    assert changes[0].data == {"sku": "P1", "name": "洗发水", "unit_price": 3990, **stored}


def test_the_cli_proves_the_figures(registry, hq_db_url, mosquitto):
    from click.testing import CliRunner

    from hq.cli import main

    items = Items(S1)
    (a,) = members_of(registry, items, "E01", 1)
    ingest(registry, S1, [sale(items, a, 10000, served_by="E02")])
    runner = CliRunner()
    base = ["--database-url", hq_db_url, *mosquitto.cli_args("hq")]
    res = runner.invoke(main, [*base, "staff-sales", "--store", S1, "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["code"]: r for r in json.loads(res.output)["staff"]}
    assert rows["E01"]["maintained_total"] == 10000 and rows["E02"]["served_total"] == 10000
    res = runner.invoke(main, [*base, "staff", "close", "E01", "--by", "hq-admin"])
    assert res.exit_code != 0 and "--handover-to" in res.output
    res = runner.invoke(
        main, [*base, "staff", "close", "E01", "--by", "hq-admin", "--handover-to", "E02"]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, [*base, "maintainer", "list", "--json"])
    assert json.loads(res.output)[0]["status"] == "done"


def test_a_transfer_asked_for_and_approved_at_a_real_till(hq_db, tmp_path):
    """Asked for at a real till, accepted at HQ, sent down to that till, approved there by
    its manager: the items the till wrote are what HQ applies."""
    from edge.models import Outbox
    from edge.services import maintainers
    from edge.sync.apply import Applier
    from tests.sync.helpers import StoreBox

    box = StoreBox(tmp_path / "box", "S7", None)
    for code, name in (("E01", "王芳"), ("E02", "李娜")):
        programme.add_staff(hq_db, code, name, "S7", "guide", "hq-admin", NOW)
    ids = members_of(hq_db, Items("S9"), "E01", 2)

    def down(entities: list[str]) -> list[p.Change]:
        rows = ChangeRecord.select().where(ChangeRecord.entity.in_(entities))
        return [p.Change(r.seq, r.entity, r.key, r.op, r.data) for r in rows]

    def outbox(kind: str) -> dict:
        return json.loads(Outbox.select().where(Outbox.kind == kind).get().payload)

    with box.bound() as till:
        with till.db.atomic():
            Applier(till.store, till.keys, till.now().isoformat()).apply_changes(down(["staff"]))
        asked = {"from_staff": "E01", "to_staff": "E02", "reason": "调岗"}
        tid = maintainers.request_transfer(till, asked, "1001")["transfer_id"]
        request = outbox("staff_request")
    assert ingest(hq_db, "S7", [request]).rejected == ()
    assert MaintainerTransfer.get_by_id(tid).member_ids == sorted(ids)
    with box.bound() as till:
        with till.db.atomic():
            applier = Applier(till.store, till.keys, till.now().isoformat())
            applier.apply_changes(down(["staff_transfer"]))
        assert [v["transfer_id"] for v in maintainers.open_transfers(till)] == [tid]
        maintainers.decide(till, tid, "approve", "9001", "1001")
        decision_item = outbox("staff_decision")
    box.till.db.close()
    assert ingest(hq_db, "S7", [decision_item]).rejected == ()
    assert [maintainer(m) for m in ids] == ["E02", "E02"]
    t = MaintainerTransfer.get_by_id(tid)
    assert (t.status, t.requested_by, t.store_approved_by) == (
        "done",
        "store:S7/staff:1001",
        "store:S7/staff:9001",
    )


def test_the_cli_requests_approves_and_publishes(registry, hq_db_url, mosquitto):
    from click.testing import CliRunner

    from hq.cli import main

    items = Items(S1)
    ids = members_of(registry, items, "E01", 2)
    runner = CliRunner()
    base = ["--database-url", hq_db_url, *mosquitto.cli_args("hq")]
    request = [*base, "maintainer", "request", "--from", "E01", "--to", "E09", "--by", "hq-ops"]
    res = runner.invoke(main, [*request, "--reason", ""])
    assert res.exit_code != 0 and "reason" in res.output
    res = runner.invoke(main, [*request, "--reason", "搬店", "--member", ids[0]])
    assert res.exit_code == 0, res.output
    tid = res.output.split()[1].rstrip(":")
    res = runner.invoke(main, [*base, "maintainer", "approve", tid, "--by", "hq-boss"])
    assert res.exit_code != 0 and "店长" in res.output
    res = runner.invoke(
        main, [*base, "maintainer", "approve", tid, "--by", "hq-boss", "--for-store"]
    )
    assert res.exit_code == 0 and "1 members moved" in res.output
    assert [maintainer(m) for m in ids] == ["E09", "E01"]

    publish = [*base, "product", "publish", "P9", "--name", "面膜", "--price", "5900"]
    res = runner.invoke(main, [*publish, "--cost", "-3"])
    assert res.exit_code != 0 and Product.get_or_none(Product.sku == "P9") is None
    res = runner.invoke(main, [*publish, "--category", "美妆", "--cost", "2100"])
    assert res.exit_code == 0, res.output
    assert Product.get_by_id("P9").data == {"category": "美妆", "cost": 2100}


def staff_request(items: Items, tid: str, from_staff: str, to_staff: str, members, reason="搬家"):
    return items._item(
        "staff_request",
        {
            "transfer_id": tid,
            "from_staff": from_staff,
            "to_staff": to_staff,
            "member_ids": members,
            "reason": reason,
            "requested_by": "1001",
            "requested_at": "2026-11-27T10:00:00+08:00",
        },
    )


def test_a_request_from_the_till_becomes_a_transfer_for_its_manager(registry):
    items = Items(S1)
    ids = members_of(registry, items, "E01", 2)
    tid = uuid7()
    assert ingest(registry, S1, [staff_request(items, tid, "E01", "E09", ids[:1])]).rejected == ()
    t = MaintainerTransfer.get_by_id(tid)
    assert (t.status, t.member_ids, t.requested_by) == ("pending", ids[:1], "store:S1/staff:1001")
    assert changes_of("staff_transfer")[-1].key == tid
    assert AuditEntry.get(AuditEntry.target == tid).action == "maintainer.request"
    # the same id again, another store's staff, no reason, a member not E01's: refused
    refused = ingest(
        registry,
        S1,
        [
            staff_request(items, tid, "E01", "E02", ids[1:]),
            staff_request(items, uuid7(), "E09", "E01", None),
            staff_request(items, uuid7(), "E01", "E02", ids[1:], reason=" "),
            staff_request(items, uuid7(), "E02", "E01", ids[1:]),
        ],
    )
    assert [r.seq for r in refused.rejected] == [
        items.seq - 3,
        items.seq - 2,
        items.seq - 1,
        items.seq,
    ]
    assert MaintainerTransfer.select().count() == 1


def test_a_large_transfer_goes_down_small():
    ids = sorted(uuid7() for _ in range(5000))
    t = MaintainerTransfer(id="T", member_ids=ids, requested_at=NOW, status="pending")
    state = programme.transfer_state(t)
    assert (state["members"], state["member_ids"]) == (5000, ids[: programme.SENT_MEMBER_IDS])
    assert len(json.dumps(state)) < 16 * 1024
