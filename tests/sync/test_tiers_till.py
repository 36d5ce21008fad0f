"""Tiers and rules at the till: a rules document the till cannot honour is refused and
reported while checkouts go on with the rules in force; and, end to end, HQ's tier
change reaches the till's applier and the member's next sale is priced with the tier
(and the member-day) rate, which HQ's re-pricing accepts."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest

from core import protocol as p
from core.protocol import Change
from core.rules import RULES_SCHEMA, Rules, TierRules, TierStep
from edge.models import Outbox, Setting
from edge.services import members as member_svc
from edge.services import sales as sales_svc
from edge.sync.apply import DOWN_CURSOR, Applier, apply_page, put_setting
from edge.sync.rules import REFUSED, retry_refused_rules
from hq.changes import changes_after
from hq.ingest import ingest_batch
from hq.lookup import ChainLookup
from hq.models import Member as HqMember
from hq.models import Return as HqReturn
from hq.models import Sale as HqSale
from hq.models import Store
from hq.programme import tiers
from hq.rules import publish_rules
from tests.sync.conftest import new_code
from tests.sync.helpers import StoreBox, init_hq

TZ = dt.timezone(dt.timedelta(hours=8))
FRIDAY = dt.datetime(2026, 11, 27, 10, 0, tzinfo=TZ)
WEDNESDAY = dt.datetime(2026, 12, 2, 10, 0, tzinfo=TZ)
NOW = "2026-11-27T10:00:00+08:00"
RICE = {"sku": "P0010", "qty": 12}  # 12 × 89.00: 1,068 yuan, no exclusions
CASH = [{"kind": "cash", "amount": 200000}]
MANAGER = {"code": "9001", "pin": "9999"}


class Clock:
    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        self.at += dt.timedelta(seconds=30)
        return self.at


@pytest.fixture
def box(tmp_path) -> StoreBox:
    store = StoreBox(tmp_path / "a", new_code("R"), None)
    store.till.clock = Clock(FRIDAY)
    store.load_demo(members=2)
    yield store
    store.close()


def rules_change(seq: int, doc: dict[str, Any]) -> Change:
    return Change(seq, "rules", str(doc.get("version")), "upsert", doc)


def apply(box: StoreBox, *changes: Change) -> None:
    with box.bound(), box.till.db.atomic():
        Applier(box.code, box.till.keys, NOW).apply_changes(list(changes))


def status_items(box: StoreBox) -> list[dict[str, Any]]:
    def read() -> list[dict[str, Any]]:
        rows = Outbox.select().where(Outbox.kind == "rules_status").order_by(Outbox.seq)
        return [json.loads(row.payload)["body"] for row in rows]

    return box.query(read)


def setting(box: StoreBox, key: str) -> Any:
    def read() -> Any:
        row = Setting.get_or_none(Setting.key == key)
        return row.value if row else None

    return box.query(read)


V2 = Rules(version=2, card_type_discount={"金卡": 900}, tier_discount={"钻石": 880}).to_dict()


# ---- refusing what the till cannot honour ---------------------------------------------


@pytest.mark.parametrize(
    ("doc", "named"),
    [
        # a newer schema than this software's
        (V2 | {"version": 3, "schema": RULES_SCHEMA + 1}, "schema"),
        # a key this software does not know (a later release's rule)
        (V2 | {"version": 3, "schema": RULES_SCHEMA, "lucky_draw": {"odds": 5}}, "lucky_draw"),
        # a malformed document
        (V2 | {"version": 3, "tier_discount": {"钻石": 1200}}, "tier_discount"),
        (V2 | {"version": 3, "tiers": {"ladder": "金"}}, "ladder"),
    ],
)
def test_a_document_the_till_cannot_honour_is_refused_and_reported(box, doc, named):
    apply(box, rules_change(1, V2))
    before = box.sell({"card_no": "C0001"}, [RICE], CASH)
    apply(box, rules_change(2, doc))
    refused = setting(box, REFUSED)
    assert refused["version"] == 3 and named in refused["reason"]
    assert refused["document"] == doc
    assert setting(box, "rules")["version"] == 2
    # checkouts go on with the rules in force, priced as before
    after = box.sell({"card_no": "C0001"}, [RICE], CASH)
    assert box.query(lambda: box.till.rules().version) == 2
    assert after["total"] == before["total"]
    statuses = status_items(box)
    assert [(s["version_in_force"], s["refused_version"]) for s in statuses] == [(2, None), (2, 3)]
    assert named in statuses[-1]["reason"]
    for body in statuses:
        p.validate_rules_status_body(body)
    # seen again (a page asked twice, a snapshot): reported once
    apply(box, rules_change(2, doc))
    assert len(status_items(box)) == 2


def test_an_older_version_is_ignored_and_a_newer_good_one_clears_the_refusal(box):
    apply(box, rules_change(1, V2), rules_change(2, V2 | {"version": 3, "schema": 99}))
    apply(box, rules_change(3, V2 | {"version": 1}))
    assert setting(box, "rules")["version"] == 2
    apply(box, rules_change(4, V2 | {"version": 4}))
    assert setting(box, "rules")["version"] == 4
    assert setting(box, REFUSED) is None
    assert [(s["version_in_force"], s["refused_version"]) for s in status_items(box)] == [
        (2, None),
        (2, 3),
        (4, None),
    ]


def test_a_stored_document_that_cannot_load_never_fails_a_checkout(box):
    apply(box, rules_change(1, V2))
    first = box.sell({"card_no": "C0001"}, [RICE], CASH)
    # written by software that stored any document (before this release)
    box.query(lambda: put_setting("rules", V2 | {"version": 5, "lucky_draw": 1}))
    again = box.sell({"card_no": "C0001"}, [RICE], CASH)
    assert again["total"] == first["total"]
    assert box.query(lambda: box.till.rules().version) == 2


def test_after_an_upgrade_the_refused_document_is_taken(box):
    apply(box, rules_change(1, V2))
    loadable = V2 | {"version": 6}
    box.query(
        lambda: put_setting(REFUSED, {"version": 6, "reason": "x", "at": NOW, "document": loadable})
    )
    with box.bound():
        assert retry_refused_rules(box.till.db, box.code, NOW) == "taken"
        assert retry_refused_rules(box.till.db, box.code, NOW) is None
    assert setting(box, "rules")["version"] == 6
    assert status_items(box)[-1]["version_in_force"] == 6


# ---- end to end: HQ's tier change prices the member's next sale ---------------------

LADDER = (TierStep("银", 0), TierStep("金", 1000))
HQ_RULES = Rules(
    version=2,
    card_type_discount={"普通卡": 1000, "金卡": 900},
    tier_discount={"金": 900},
    member_day_weekdays=(2,),  # Wednesday
    member_day_discount=850,
    tiers=TierRules(ladder=LADDER, growth_per_yuan=1),
)


def drain(box: StoreBox, hq_db) -> p.Ack:  # noqa: ANN001
    """Send the till's outbox to HQ's ingest, as the agent would."""

    def pending() -> list[dict[str, Any]]:
        rows = Outbox.select().where(Outbox.acked == False).order_by(Outbox.seq)  # noqa: E712
        return [json.loads(row.payload) for row in rows]

    items = box.query(pending)
    batch = p.make_batch(box.code, 1, items)
    outcome = ingest_batch(
        hq_db, p.up_topic(box.code, "tx"), box.code, batch, dt.datetime(2026, 12, 2)
    )
    assert outcome.ack is not None, outcome.dead_letter
    assert outcome.ack.rejected == (), outcome.ack.rejected
    box.query(lambda: Outbox.update(acked=True).execute())
    return outcome.ack


def pull(box: StoreBox) -> None:
    """Page HQ's changes after the till's cursor into its applier, as the agent would."""
    lookup = ChainLookup(lambda: (Path(os.environ["HY_HQ_LOOKUP_KEY_FILE"]), True))
    with box.bound():
        cursor = int(Setting.get_or_none(Setting.key == DOWN_CURSOR).value or 0)
    page = changes_after(cursor, 500, lookup)
    assert not page.snapshot_required
    with box.bound():
        apply_page(box.till.db, box.code, box.till.keys, page, NOW)


def test_a_tier_from_hq_prices_the_members_next_sale(box, hq_db_url):
    hq_db = init_hq(hq_db_url)
    try:
        publish_rules(hq_db, HQ_RULES.to_dict())
        with box.bound():
            put_setting(DOWN_CURSOR, 0)
        pull(box)
        assert box.query(lambda: box.till.rules()) == HQ_RULES
        with box.bound():
            reg = member_svc.Registration(name="王五", phone="13900000077")
            mid = member_svc.register(box.till, reg, "1001").id
        first = box.sell({"member_id": mid}, [RICE], CASH)
        assert first["sale"]["member_discount"] == 0  # 普通卡, no tier yet
        drain(box, hq_db)
        assert Store.get_by_id(box.code).rules_version == 2
        counts = tiers.evaluate_tiers(hq_db, FRIDAY.date())
        assert counts["upgrade"] == 3  # 王五 to 金; the two demo members to 银
        assert (HqMember.get_by_id(mid).tier, HqMember.get_by_id(mid).growth) == ("金", 1068)
        pull(box)
        assert box.member(mid).tier == "金" and box.member(mid).growth == 1068
        # the next sale: 10% tier discount
        second = box.sell({"member_id": mid}, [RICE], CASH)
        assert second["sale"]["member_discount"] == 106800 - 96120
        assert second["total"] == 96120
        # on member day: the better of the tier's 90% and the member day's 85%
        box.till.clock = Clock(WEDNESDAY)
        third = box.sell({"member_id": mid}, [RICE], CASH)
        assert third["total"] == 90780
        # the first sale, made before the tier, comes back: refunded as sold, not re-priced
        with box.bound():
            ret = sales_svc.return_sale(box.till, box.staff(), first["sale_id"], None, MANAGER)
        assert ret["return"]["refund_total"] == first["total"] == 106800
        # HQ re-prices both sales with the same rules and days, agrees, and takes the return
        drain(box, hq_db)
        totals = {s.sale_id: s.total for s in HqSale.select()}
        assert totals[second["sale_id"]] == 96120 and totals[third["sale_id"]] == 90780
        assert HqReturn.get(HqReturn.sale_id == first["sale_id"]).refund_total == 106800
    finally:
        hq_db.close()
