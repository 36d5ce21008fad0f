"""Cards at HQ (hq/programme/cards.py), on SQLite and PostgreSQL: card sales checked
against the rules version the store priced with and applied, 充值升级 verified, the
nightly ``card-expiry`` job, card types set by hand, 换卡 and 挂失 from a till and from the
CLI, and a lapsed annual card's sale priced at a real till and accepted by HQ."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from core import protocol as p
from core.ids import uuid7
from core.protocol import Change
from core.rules import DEMO_RULES, Rules
from edge.models import Card as EdgeCard
from edge.models import Member as EdgeMember
from edge.models import Outbox, Setting
from edge.services import cards as edge_cards
from edge.services import members as member_svc
from edge.services import sales as sales_svc
from edge.services.context import open_till
from edge.services.staff import SignedIn, add_staff
from edge.sync.apply import Applier
from hq import scheduler
from hq.cli import main
from hq.config import HqConfig
from hq.ingest import ingest_batch
from hq.models import (
    AuditEntry,
    Card,
    CardSale,
    CardTypeChange,
    ChangeRecord,
    JobRun,
    Member,
    bind,
)
from hq.programme import cards as hq_cards
from hq.rules import publish_rules
from tests.edge.conftest import CN, Clock, make_config
from tests.hq.edge_sim import Items
from tests.hq.test_ingest import balances_match_ledger

NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
RULES = Rules.from_dict(
    DEMO_RULES.to_dict()
    | {
        "version": 5,
        "schema": 2,
        "card_type_discount": {"普通卡": 1000, "银卡": 950, "金卡": 900, "年卡": 850},
        "topup_bonuses": [],
        "rounding": "none",
        "cards": {
            "products": [{"card_type": "年卡", "price": 19800, "months": 12}],
            "upgrades": [{"threshold": 50000, "card_type": "金卡"}],
        },
    }
)


@pytest.fixture
def card_rules(hq_db):
    publish_rules(hq_db, RULES.to_dict())
    return RULES


def ingest(store: str, items: list[dict]) -> p.Ack:
    outcome = ingest_batch(
        Member._meta.database, p.up_topic(store, "tx"), store, p.make_batch(store, 1, items), NOW
    )
    assert outcome.ack is not None, outcome.dead_letter
    return outcome.ack


def refused(ack: p.Ack, seq: int) -> p.Rejection:
    found = [r for r in ack.rejected if r.seq == seq]
    assert found, f"seq {seq} was not refused: {ack}"
    return found[0]


def card_sale(items: Items, member_id: str, valid_from: str, valid_to: str, **extra) -> dict:
    body = {
        "card_sale_id": uuid7(),
        "member_id": member_id,
        "card_type": "年卡",
        "price": 19800,
        "valid_from": valid_from,
        "valid_to": valid_to,
        "renewal": False,
        "tender": "cash",
        "cashier": "1001",
    } | extra
    return items._item("card_sale", body, rules_version=5)


def registered(store: str, items: Items, card_no: str | None = None) -> str:
    mid = uuid7()
    phone = f"139{int(uuid7()[-8:], 16) % 10**8:08d}"
    ack = ingest(store, [items.registration(mid, phone, card_no=card_no)])
    assert ack.rejected == ()
    return mid


def _member_changes(member_id: str) -> list[dict]:
    return [
        r.data
        for r in ChangeRecord.select()
        .where((ChangeRecord.entity == "member") & (ChangeRecord.key == member_id))
        .order_by(ChangeRecord.seq)
    ]


# ---- card sales --------------------------------------------------------------------


def test_a_card_sale_at_the_rules_price_gives_the_member_the_card(card_rules, store_code):
    items = Items(store_code)  # its clock: 2026-11-23
    mid = registered(store_code, items)
    item = card_sale(items, mid, "2026-11-23", "2027-11-22")
    assert ingest(store_code, [item]).rejected == ()
    member = Member.get_by_id(mid)
    assert (member.card_type, member.card_expires_on) == ("年卡", dt.date(2027, 11, 22))
    row = CardSale.get_by_id(item["body"]["card_sale_id"])
    assert (row.price, row.valid_from, row.valid_to, row.rules_version) == (
        19800,
        dt.date(2026, 11, 23),
        dt.date(2027, 11, 22),
        5,
    )
    assert _member_changes(mid)[-1]["card_expires_on"] == "2027-11-22"
    assert CardTypeChange.get(CardTypeChange.member_id == mid).reason == "sale"
    balances_match_ledger(mid)  # a card's price is not stored value: no balance moved
    # the same item again is a duplicate, not a second card
    again = ingest(store_code, [item | {"seq": items.seq + 1}])
    assert CardSale.select().count() == 1, again


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"price": 9800}, "price"),
        ({"card_type": "金卡"}, "card_type"),
        ({"valid_to": "2027-12-31"}, "valid_to"),
        ({"valid_from": "2026-11-01", "valid_to": "2027-10-31"}, "valid_from"),
        ({"rules_version": 99}, "price"),  # HQ cannot check it: refused, never posted
    ],
)
def test_a_card_sale_that_does_not_add_up_is_refused_and_writes_nothing(
    card_rules, store_code, change, field
):
    items = Items(store_code)
    mid = registered(store_code, items)
    change = dict(change)  # the table's row is shared by the SQLite and PostgreSQL runs
    rules_version = change.pop("rules_version", 5)
    body = {
        "card_sale_id": uuid7(),
        "member_id": mid,
        "card_type": "年卡",
        "price": 19800,
        "valid_from": "2026-11-23",
        "valid_to": "2027-11-22",
        "renewal": False,
        "tender": "cash",
        "cashier": "1001",
    } | change
    item = items._item("card_sale", body, rules_version=rules_version)
    rejection = refused(ingest(store_code, [item]), item["seq"])
    assert rejection.code == "apply_failed"
    assert field in rejection.reason
    assert CardSale.select().count() == 0
    assert Member.get_by_id(mid).card_type == "普通卡"


def test_two_stores_renewing_offline_both_count(card_rules, store_code):
    a, b = Items(store_code), Items(store_code + "b")
    mid = registered(store_code, a)
    assert ingest(store_code, [card_sale(a, mid, "2026-11-23", "2027-11-22")]).rejected == ()
    # both stores renew from the same last day while offline
    renew = {"renewal": True}
    assert (
        ingest(store_code, [card_sale(a, mid, "2027-11-23", "2028-11-22", **renew)]).rejected == ()
    )
    late = card_sale(b, mid, "2027-11-23", "2028-11-22", **renew)
    assert ingest(store_code + "b", [late]).rejected == ()
    assert Member.get_by_id(mid).card_expires_on == dt.date(2029, 11, 22)
    assert CardSale.get_by_id(late["body"]["card_sale_id"]).valid_from == dt.date(2028, 11, 23)


# ---- 充值升级 ----------------------------------------------------------------------


def test_a_topup_upgrade_is_checked_against_the_rules(card_rules, store_code):
    items = Items(store_code)
    mid = registered(store_code, items)
    wrong = items.topup(mid, 40000, 0)
    wrong["body"]["card_type"] = "金卡"
    wrong["rules_version"] = 5
    rejection = refused(ingest(store_code, [wrong]), wrong["seq"])
    assert "card_type" in rejection.reason
    assert Member.get_by_id(mid).sv_principal == 0
    right = items.topup(mid, 50000, 0)
    right["body"]["card_type"] = "金卡"
    right["rules_version"] = 5
    assert ingest(store_code, [right]).rejected == ()
    member = Member.get_by_id(mid)
    assert (member.card_type, member.sv_principal) == ("金卡", 50000)
    assert CardTypeChange.get(CardTypeChange.member_id == mid).reason == "upgrade"


# ---- the nightly job ----------------------------------------------------------------


def test_card_expiry_lapses_the_day_after_the_last_day_once(card_rules, store_code, hq_db):
    items = Items(store_code)
    mid = registered(store_code, items)
    assert ingest(store_code, [card_sale(items, mid, "2026-11-23", "2027-11-22")]).rejected == ()
    assert hq_cards.expire_cards_on(hq_db, dt.date(2027, 11, 22), NOW) == {"lapsed": 0}
    assert Member.get_by_id(mid).card_type == "年卡"  # expires today: still valid today
    before = ChangeRecord.select().count()
    assert hq_cards.expire_cards_on(hq_db, dt.date(2027, 11, 23), NOW) == {"lapsed": 1}
    member = Member.get_by_id(mid)
    assert (member.card_type, member.card_expires_on) == ("普通卡", None)
    lapse = CardTypeChange.get(CardTypeChange.reason == "lapse")
    assert (lapse.from_type, lapse.to_type, lapse.ref) == ("年卡", "普通卡", "lapse:2027-11-22")
    assert ChangeRecord.select().count() == before + 1
    assert _member_changes(mid)[-1]["card_type"] == "普通卡"
    # a re-run the same day changes nothing more
    assert hq_cards.expire_cards_on(hq_db, dt.date(2027, 11, 23), NOW) == {"lapsed": 0}
    assert ChangeRecord.select().count() == before + 1


def test_card_expiry_runs_as_a_recorded_job(card_rules, store_code, hq_db, hq_db_url):
    items = Items(store_code)
    mid = registered(store_code, items)
    assert ingest(store_code, [card_sale(items, mid, "2026-11-23", "2027-11-22")]).rejected == ()
    (job,) = [j for j in scheduler.JOBS if j.name == "card-expiry"]
    config = HqConfig(database_url=hq_db_url)
    clock = lambda: dt.datetime(2027, 11, 23, 17, 0)  # noqa: E731 - 01:00 on the 24th in China
    run = scheduler.record_run(hq_db, job, "node-1", scheduler.JobContext(hq_db, config, clock))
    assert (run.status, run.counts) == ("ok", {"lapsed": 1}), run.error
    assert JobRun.get_by_id(run.id).counts == {"lapsed": 1}
    assert Member.get_by_id(mid).card_type == "普通卡"


# ---- 换卡 and 挂失 from a till ---------------------------------------------------------


def test_a_replacement_at_one_store_reaches_another_that_was_offline(
    card_rules, store_code, hq_db, tmp_path
):
    items = Items(store_code)
    mid = registered(store_code, items, card_no="A0001")
    other = registered(store_code, items, card_no="B0001")
    taken = items._item(
        "card_replace",
        {
            "replace_id": uuid7(),
            "member_id": mid,
            "old_card_no": "A0001",
            "new_card_no": "B0001",
            "reason": "卡片损坏",
            "cashier": "1001",
            "approved_by": "9001",
        },
    )
    rejection = refused(ingest(store_code, [taken]), taken["seq"])
    assert "B0001" in rejection.reason and other
    item = items._item(
        "card_replace",
        {
            "replace_id": uuid7(),
            "member_id": mid,
            "old_card_no": "A0001",
            "new_card_no": "N0001",
            "reason": "卡片损坏",
            "cashier": "1001",
            "approved_by": "9001",
        },
    )
    assert ingest(store_code, [item]).rejected == ()
    assert Card.get_by_id("A0001").status == "blocked"
    assert (Card.get_by_id("N0001").member_id, Card.get_by_id("N0001").status) == (mid, "active")
    entry = AuditEntry.get(AuditEntry.action == "card.replace")
    assert entry.actor == f"store:{store_code}/staff:1001"
    assert (entry.target, entry.reason, entry.details["approved_by"]) == (mid, "卡片损坏", "9001")
    # another store, offline meanwhile, holds the member and the old card
    till = open_till(
        make_config(tmp_path), clock=Clock(dt.datetime(2026, 11, 24, tzinfo=CN)), create_key=True
    )
    try:
        with till.db.atomic():
            EdgeMember.create(
                id=mid,
                name="张三",
                name_pinyin="zhangsan",
                name_initials="zs",
                registered_at="2026-11-23T10:00:00+08:00",
                registered_store=store_code,
                updated_at="2026-11-23T10:00:00+08:00",
                sv_principal=500,
            )
            EdgeCard.create(card_no="A0001", member_id=mid, issued_at="2026-11-23")
        assert member_svc.by_card("A0001").id == mid  # offline: it does not know yet
        changes = [
            Change(r.seq, r.entity, r.key, r.op, r.data)
            for r in ChangeRecord.select()
            .where(ChangeRecord.entity.in_(["card", "card_block"]))
            .order_by(ChangeRecord.seq)
        ]
        with till.db.atomic():
            Applier(till.store, till.keys, "2026-11-25T10:00:00+08:00").apply_changes(changes)
        with pytest.raises(Exception, match="挂失"):
            member_svc.by_card("A0001")
        assert member_svc.by_card("N0001").id == mid
        assert member_svc.by_card("N0001").sv_principal == 500  # balances are the member's
    finally:
        till.db.close()


def test_a_lost_card_blocked_at_a_till_is_blocked_chain_wide(card_rules, store_code):
    items = Items(store_code)
    mid = registered(store_code, items, card_no="L0001")
    item = items._item(
        "card_block",
        {
            "block_id": uuid7(),
            "card_no": "L0001",
            "member_id": mid,
            "reason": "挂失",
            "cashier": "1001",
            "approved_by": "9001",
        },
    )
    assert ingest(store_code, [item]).rejected == ()
    card = Card.get_by_id("L0001")
    assert (card.status, card.blocked_reason) == ("blocked", "挂失")
    blocks = ChangeRecord.select().where(ChangeRecord.entity == "card_block")
    assert [(r.key, r.data["blocked"]) for r in blocks] == [("L0001", True)]
    entry = AuditEntry.get(AuditEntry.action == "card.block")
    assert (entry.actor, entry.target) == (f"store:{store_code}/staff:1001", "L0001")
    unknown = items._item(
        "card_block",
        {
            "block_id": uuid7(),
            "card_no": "NOPE",
            "member_id": None,
            "reason": "挂失",
            "cashier": "1001",
            "approved_by": "9001",
        },
    )
    assert "NOPE" in refused(ingest(store_code, [unknown]), unknown["seq"]).reason


# ---- HQ staff: the CLI ----------------------------------------------------------------


def test_the_cli_sets_card_types_replaces_and_blocks_cards_audited(
    card_rules, store_code, hq_db, hq_db_url
):
    items = Items(store_code)
    mid = registered(store_code, items, card_no="H0001")
    other = registered(store_code, items, card_no="H0002")
    runner = CliRunner()
    base = ["--database-url", hq_db_url, "--mqtt-url", "mqtt://127.0.0.1:1"]

    def run(*args: str):
        result = runner.invoke(main, [*base, *args])
        bind(hq_db, create=False)  # the CLI bound the models to its own connection
        return result

    no_reason = run("set-card-type", mid, "金卡", "--by", "hq-li", "--reason", " ")
    assert no_reason.exit_code != 0 and "reason" in no_reason.output
    unknown = run("set-card-type", mid, "黑卡", "--by", "hq-li", "--reason", "补录")
    assert unknown.exit_code != 0 and "黑卡" in unknown.output
    dated = ("--expires-on", "2027-01-31")
    no_last_day = run("set-card-type", mid, "金卡", "--by", "hq-li", "--reason", "补录", *dated)
    assert no_last_day.exit_code != 0 and "金卡" in no_last_day.output
    ok = run(
        "set-card-type",
        mid,
        "年卡",
        "--by",
        "hq-li",
        "--reason",
        "补录",
        "--expires-on",
        "2027-01-31",
    )
    assert ok.exit_code == 0, ok.output
    member = Member.get_by_id(mid)
    assert (member.card_type, member.card_expires_on) == ("年卡", dt.date(2027, 1, 31))
    entry = AuditEntry.get(AuditEntry.action == "card_type.set")
    assert (entry.actor, entry.target, entry.reason) == ("hq-li", mid, "补录")
    assert entry.details["from_type"] == "普通卡"

    used = run("replace-card", mid, "H0001", "H0002", "--by", "hq-li", "--reason", "换卡")
    assert used.exit_code != 0 and "H0002" in used.output and other
    replaced = run("replace-card", mid, "H0001", "H0009", "--by", "hq-li", "--reason", "损坏")
    assert replaced.exit_code == 0, replaced.output
    assert Card.get_by_id("H0001").status == "blocked"
    assert Card.get_by_id("H0009").member_id == mid
    assert AuditEntry.get(AuditEntry.action == "card.replace").actor == "hq-li"

    blocked = run("block-card", "H0009", "--by", "hq-li", "--reason", "挂失")
    assert blocked.exit_code == 0, blocked.output
    assert Card.get_by_id("H0009").status == "blocked"
    lifted = run("block-card", "H0009", "--by", "hq-li", "--reason", "找回", "--unblock")
    assert lifted.exit_code == 0, lifted.output
    assert Card.get_by_id("H0009").status == "active"
    actions = [e.action for e in AuditEntry.select().order_by(AuditEntry.id)]
    assert actions == ["card_type.set", "card.replace", "card.block", "card.unblock"]


# ---- a real till and HQ agree on a lapsed card ---------------------------------------


def test_a_sale_the_day_after_lapse_is_priced_without_the_discount_and_accepted(
    card_rules, tmp_path
):
    clock = Clock(dt.datetime(2026, 11, 23, 10, 0, tzinfo=CN))
    till = open_till(make_config(tmp_path), clock=clock, create_key=True)
    try:
        Setting.replace(key="rules", value=RULES.to_dict()).execute()
        add_staff(till, "1001", "王收银", "cashier", "1234")
        staff = SignedIn("1001", "王收银", "cashier")
        from edge.models import Product

        Product.create(sku="P1", name="苹果", price=1000, updated_at="2026-11-23")
        reg = member_svc.Registration.from_request({"name": "张三", "phone": "13800000077"})
        member = member_svc.register(till, reg, "1001")
        edge_cards.sell_card(till, staff, member.id, "年卡")
        clock.advance(days=365)  # 2027-11-23: the day after the last day, 2027-11-22
        req = sales_svc.CheckoutRequest.from_request(
            {
                "member": {"member_id": member.id},
                "lines": [{"sku": "P1", "qty": 1}],
                "tenders": [{"kind": "cash", "amount": 1000}],
            }
        )
        sold = sales_svc.checkout(till, staff, req)
        assert sold["total"] == 1000  # no 年卡 discount
        payloads = [json.loads(o.payload) for o in Outbox.select().order_by(Outbox.seq)]
    finally:
        till.db.close()
    assert [i["kind"] for i in payloads] == ["registration", "card_sale", "sale"]
    sale = payloads[-1]["body"]
    assert sale["pricing_input"]["member"]["card_type"] == "普通卡"
    ack = ingest(payloads[0]["store"], payloads)
    assert ack.rejected == (), ack
    assert Member.get_by_id(member.id).card_expires_on == dt.date(2027, 11, 22)
    from hq.models import HqException

    assert HqException.select().where(HqException.kind == "card_not_in_force").count() == 0


# ---- two real stores and HQ through the broker ------------------------------------------


def test_a_card_sold_and_replaced_at_one_store_reaches_another_back_from_offline(
    tmp_path, mosquitto, worker, hq_db
):
    """Store A sells 李四 a 年卡 and replaces her card while store B is offline; B keeps
    taking the old card until it is back, then refuses it, knows the new one and prices
    her as a 年卡 holder. HQ applied every item as the tills wrote them."""
    from peewee import fn

    from edge.sync.apply import down_cursor
    from tests.sync.helpers import StoreBox, wait_until

    publish_rules(hq_db, RULES.to_dict())
    clock = Clock(dt.datetime(2026, 11, 27, 10, 0, tzinfo=CN))
    a = StoreBox(tmp_path / "a", f"A{uuid7()[-6:]}", mosquitto)
    b = StoreBox(tmp_path / "b", f"B{uuid7()[-6:]}", mosquitto)

    def caught_up(box: StoreBox) -> None:
        latest = ChangeRecord.select(fn.MAX(ChangeRecord.seq)).scalar()
        wait_until(lambda: box.query(down_cursor) >= latest, 30, f"{box.code} at {latest}")

    def quote_total(box: StoreBox, card_no: str) -> int:
        req = sales_svc.BasketRequest.from_request(
            {"member": {"card_no": card_no}, "lines": [{"sku": "P0009", "qty": 10}]}
        )
        return box.query(lambda: sales_svc.quote(box.till, req)["total"])

    try:
        for box in (a, b):
            box.till.clock = clock
        a.load_demo(members=2)
        b.load_staff_and_products()
        a.start_agent()
        wait_until(lambda: a.pending() == 0, 30, "A drained")
        b.start_agent()
        caught_up(a)
        caught_up(b)
        li = b.query(lambda: member_svc.by_card("C0002").id)
        assert quote_total(b, "C0002") == 7990 - 7990 * 50 // 1000  # 银卡 at 950
        b.stop_agent()  # B goes offline

        with a.bound():
            staff = a.staff()
            manager = SignedIn("9001", "李店长", "manager")
            edge_cards.sell_card(a.till, staff, li, "年卡")
            edge_cards.replace_card(a.till, staff, manager, li, "C0002", "N0002", "卡片损坏")
        wait_until(lambda: a.pending() == 0, 30, "A drained the card sale and replacement")
        assert Member.get_by_id(li).card_expires_on == dt.date(2027, 11, 26)
        assert Card.get_by_id("C0002").status == "blocked"
        # B, offline, still knows only the old card and the 银卡
        assert b.query(lambda: member_svc.by_card("C0002").id) == li
        assert quote_total(b, "C0002") == 7990 - 7990 * 50 // 1000

        b.start_agent()
        caught_up(b)
        with pytest.raises(Exception, match="挂失"):
            b.query(lambda: member_svc.by_card("C0002"))
        assert b.query(lambda: member_svc.by_card("N0002").id) == li
        assert b.query(lambda: member_svc.resolve(li).card_expires_on) == "2027-11-26"
        assert quote_total(b, "N0002") == 7990 - 7990 * 150 // 1000  # 年卡 at 850
        assert (
            a.query(lambda: Outbox.select().where(Outbox.reject_code.is_null(False)).count()) == 0
        )
    finally:
        a.close()
        b.close()


def test_a_sale_priced_with_a_card_hq_knows_lapsed_is_held_as_an_exception(
    card_rules, store_code, hq_db
):
    from hq.models import HqException

    items = Items(store_code)  # its clock: 2026-11-23 onwards
    mid = registered(store_code, items)
    hq_cards.set_card_type(hq_db, mid, "年卡", "hq-li", "补录", NOW, dt.date(2026, 11, 22))
    fair = items.sale(mid, rules_version=5)  # priced as 普通卡, the fallback: nothing to note
    claimed = items.sale(mid, rules_version=5)
    claimed["body"]["pricing_input"]["member"]["card_type"] = "年卡"  # the lapsed card
    ack = ingest(store_code, [fair, claimed])
    assert ack.rejected == ()  # posted as priced: HQ never loses a store's sale
    (held,) = HqException.select().where(HqException.kind == "card_not_in_force")
    assert (held.member_id, held.ref) == (mid, claimed["body"]["sale_id"])
    assert "年卡" in held.details["reason"]


def test_a_paid_card_and_its_history_follow_a_merge(card_rules, store_code, hq_db):
    from hq.services import staff_merge

    items = Items(store_code)
    paid, plain = registered(store_code, items), registered(store_code, items)
    sale = card_sale(items, paid, "2026-11-23", "2027-11-22")
    assert ingest(store_code, [sale]).rejected == ()
    staff_merge(hq_db, paid, plain, "hq-li", NOW)
    survivor = Member.get_by_id(plain)
    assert (survivor.card_type, survivor.card_expires_on) == ("年卡", dt.date(2027, 11, 22))
    assert CardSale.get_by_id(sale["body"]["card_sale_id"]).member_id == plain
    assert CardTypeChange.get(CardTypeChange.reason == "merge").ref == paid
    assert _member_changes(plain)[-1]["card_expires_on"] == "2027-11-22"
    # a survivor whose own card ends later keeps it
    longer, shorter = registered(store_code, items), registered(store_code, items)
    hq_cards.set_card_type(hq_db, longer, "年卡", "hq-li", "补录", NOW, dt.date(2028, 1, 1))
    hq_cards.set_card_type(hq_db, shorter, "年卡", "hq-li", "补录", NOW, dt.date(2027, 1, 1))
    staff_merge(hq_db, shorter, longer, "hq-li", NOW)
    assert Member.get_by_id(longer).card_expires_on == dt.date(2028, 1, 1)
