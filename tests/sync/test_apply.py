"""Down-sync at the store, without a network: pages, cursor, balances with `through`, merges,
snapshots, and the [sync] configuration."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.protocol import Change, ChangePage, assemble_snapshot, snapshot_chunks
from core.rules import DEMO_RULES
from edge.config import config_problems
from edge.demo_data import load_demo
from edge.models import Card, Ledger, Member, MemberAlias, Outbox, Product, Setting
from edge.services import members as member_svc
from edge.services import sales
from edge.services.context import open_till
from edge.services.staff import sign_in
from edge.sync.apply import apply_page, down_cursor, ensure_sync_tables, load_snapshot
from edge.sync.config import SyncConfig
from tests.edge.conftest import make_config
from tests.lookup_keys import give_lookup_key, hq_phone

NOW = "2026-11-23T10:00:00+08:00"
OTHER = "01a20000-0000-7000-8000-00000000beef"


@pytest.fixture
def till(tmp_path):
    t = open_till(make_config(tmp_path, store={"code": "S1"}), create_key=True)
    ensure_sync_tables(t.db)
    give_lookup_key(t, NOW)  # as its first snapshot would
    yield t
    t.db.close()


@pytest.fixture
def demo(till):
    load_demo(till, members=2)
    return till


def member_data(member_id: str, phone: str = "13700000006", **over) -> dict:
    """A member record as HQ sends it: the phone only as its lookup hash and last four."""
    data = {
        "member_id": member_id,
        "name": "赵六",
        **hq_phone(phone),
        "gender": "F",
        "birthday": None,
        "birthday_calendar": "solar",
        "birthday_leap_month": False,
        "card_type": "银卡",
        "tier": "",
        "staff_code": None,
        "registered_at": "2026-11-20T09:00:00+08:00",
        "registered_store": "S9",
        "status": "active",
        "merged_into": None,
        "stored_value": {"principal": 0, "bonus": 0},
        "points": 0,
        "points_lots": [],
        "points_debt": 0,
        "through": {},
    }
    data.update(over)
    return data


def page(*changes: Change, start: int | None = None, more: bool = False) -> ChangePage:
    first = start if start is not None else changes[0].seq
    last = changes[-1].seq if changes else first - 1
    return ChangePage(first, last, tuple(changes), more, last)


def apply(till, *changes: Change, start: int | None = None) -> tuple[int, int]:
    return apply_page(till.db, till.store, till.keys, page(*changes, start=start), NOW)


def ledger_total(member_id: str, accounts: tuple[str, ...]) -> int:
    return sum(
        r.delta
        for r in Ledger.select().where(
            (Ledger.member_id == member_id) & Ledger.account.in_(accounts)
        )
    )


def test_a_member_from_hq_is_found_by_phone_with_its_balances(till):
    lots = [
        {
            "lot_id": "L1",
            "earned_on": "2026-11-01",
            "expires_on": "2027-11-01",
            "remaining": 120,
        }
    ]
    data = member_data(
        OTHER, stored_value={"principal": 5000, "bonus": 500}, points=120, points_lots=lots
    )
    assert apply(till, Change(1, "member", OTHER, "upsert", data)) == (1, 1)
    m = member_svc.by_phone(till, "13700000006")
    assert (m.id, m.sv_principal, m.sv_bonus, m.phone_tail) == (OTHER, 5000, 500, "0006")
    # another store's member: its phone is not held here at all (invariant 8)
    assert m.phone_enc is None and member_svc.phone_of(till, m) is None
    assert member_svc.summary(till, m)["points"] == 120
    assert ledger_total(OTHER, ("sv_principal",)) == 5000
    assert ledger_total(OTHER, ("points",)) == 120
    assert down_cursor() == 1


def test_local_spends_hq_has_not_applied_are_neither_lost_nor_counted_twice(demo):
    till = demo
    zhang = member_svc.by_phone(till, "13800000001")
    _, staff = sign_in(till, "1001", "1234")
    sales.top_up(till, staff, {"card_no": "C0001"}, 10000)
    after_topup = Member.get_by_id(zhang.id)
    topup_seq = Outbox.select().order_by(Outbox.seq.desc()).first().seq
    sales.checkout(
        till,
        staff,
        sales.CheckoutRequest.from_request(
            {
                "member": {"card_no": "C0001"},
                "lines": [{"sku": "P0004"}],
                "tenders": [{"kind": "stored_value", "amount": 2790}],
                "member_password": "123456",
            }
        ),
    )
    local = Member.get_by_id(zhang.id)
    assert (
        local.sv_principal + local.sv_bonus
        == after_topup.sv_principal + after_topup.sv_bonus - 2790
    )
    hq_sv = {"principal": after_topup.sv_principal, "bonus": after_topup.sv_bonus}
    # HQ has applied the top-up but not yet the sale: the sale stays in the cached balance
    apply(
        till,
        Change(
            1,
            "member",
            zhang.id,
            "upsert",
            member_data(
                zhang.id,
                phone="13800000001",
                name="张三",
                stored_value=hq_sv,
                through={"S1": topup_seq},
            ),
        ),
    )
    again = Member.get_by_id(zhang.id)
    assert (again.sv_principal, again.sv_bonus) == (local.sv_principal, local.sv_bonus)
    # HQ has applied both: its balance already holds the sale, which is not taken twice
    spent = {"principal": local.sv_principal, "bonus": local.sv_bonus}
    apply(
        till,
        Change(
            2,
            "member",
            zhang.id,
            "upsert",
            member_data(
                zhang.id,
                phone="13800000001",
                name="张三",
                stored_value=spent,
                through={"S1": topup_seq + 1},
            ),
        ),
    )
    final = Member.get_by_id(zhang.id)
    assert (final.sv_principal, final.sv_bonus) == (local.sv_principal, local.sv_bonus)
    assert ledger_total(zhang.id, ("sv_principal",)) == final.sv_principal
    assert ledger_total(zhang.id, ("sv_bonus",)) == final.sv_bonus
    assert final.password_hash  # HQ never sends it; the local one is kept


def test_pages_apply_once_in_order_and_a_gap_applies_nothing(till):
    rules = DEMO_RULES.to_dict() | {"version": 7}
    assert apply(till, Change(1, "rules", "7", "upsert", rules)) == (1, 1)
    assert apply(till, Change(1, "rules", "7", "upsert", rules)) == (0, 1)  # a duplicate
    older = DEMO_RULES.to_dict() | {"version": 3}
    assert apply(till, Change(3, "rules", "3", "upsert", older), start=3) == (0, 1)  # gap
    assert apply(till, Change(2, "rules", "3", "upsert", older)) == (1, 2)
    assert Setting.get_by_id("rules").value["version"] == 7  # never goes back
    assert till.rules().version == 7


def test_products_cards_blocks_types_tiers_and_coupons(till):
    product = {
        "sku": "X1",
        "name": "新品",
        "unit_price": 1234,
        "barcode": "690000",
        "promo_price": None,
        "category": "OTC",
        "cost": 800,
    }
    card = {"card_no": "K1", "member_id": OTHER, "card_type": "银卡", "status": "active"}
    apply(
        till,
        Change(1, "member", OTHER, "upsert", member_data(OTHER)),
        Change(2, "product", "X1", "upsert", product),
        Change(3, "card", "K1", "upsert", card),
        Change(4, "card_type", "银卡", "upsert", {"name": "银卡", "discount": 950}),
        Change(5, "tier", "VIP", "upsert", {"name": "VIP"}),
        Change(
            6,
            "coupon",
            "Q1",
            "upsert",
            {
                "code": "Q1",
                "member_id": OTHER,
                "value": 500,
                "status": "issued",
                "expires_on": None,
            },
        ),
        Change(
            7,
            "offline_policy",
            "points",
            "upsert",
            {"kind": "points", "mode": "online_only", "daily_limit": 0},
        ),
    )
    x1 = Product.get_by_id("X1")
    assert (x1.price, x1.category, x1.cost) == (1234, "OTC", 800)
    assert member_svc.by_card("K1").id == OTHER
    assert Setting.get_by_id("card_types").value["银卡"]["discount"] == 950
    assert Setting.get_by_id("offline_policy.points").value["mode"] == "online_only"
    apply(
        till,
        Change(
            8, "card_block", "K1", "upsert", {"card_no": "K1", "blocked": True, "reason": "挂失"}
        ),
    )
    assert Card.get_by_id("K1").status == "blocked"
    apply(till, Change(9, "product", "X1", "delete", {}))
    assert Product.get_by_id("X1").active is False
    with pytest.raises(Exception, match="unit_price"):
        apply(
            till,
            Change(10, "product", "X2", "upsert", {"sku": "X2", "name": "x", "unit_price": 1.5}),
        )
    assert down_cursor() == 9  # the bad page changed nothing, not even the cursor
    bad = {"sku": "X2", "name": "x", "unit_price": 100, "cost": "8元"}
    with pytest.raises(Exception, match="cost"):
        apply(till, Change(10, "product", "X2", "upsert", bad))


def test_a_merge_maps_the_old_id_and_moves_cards_and_balances(demo):
    till = demo
    zhang = member_svc.by_phone(till, "13800000001")
    survivor = OTHER
    apply(
        till,
        Change(
            1,
            "member",
            survivor,
            "upsert",
            member_data(
                survivor,
                phone="13800000001",
                stored_value={"principal": 700, "bonus": 0},
            ),
        ),
        Change(
            2,
            "merge",
            zhang.id,
            "upsert",
            {
                "from_member_id": zhang.id,
                "to_member_id": survivor,
                "store": "S9",
                "staff": "hq",
                "at": NOW,
            },
        ),
        Change(
            3,
            "member",
            zhang.id,
            "upsert",
            member_data(zhang.id, phone="13800000001", status="merged", merged_into=survivor),
        ),
    )
    assert MemberAlias.get_by_id(zhang.id).member_id == survivor
    assert member_svc.resolve(zhang.id).id == survivor
    assert member_svc.by_card("C0001").id == survivor
    assert member_svc.by_phone(till, "13800000001").id == survivor
    old = Member.get_by_id(zhang.id)
    assert (old.status, old.sv_principal) == ("merged", 0)
    assert Member.get_by_id(survivor).sv_principal == 700
    for mid in (zhang.id, survivor):
        m = Member.get_by_id(mid)
        assert ledger_total(mid, ("sv_principal",)) == m.sv_principal


def records(n: int) -> list[dict]:
    out = [{"seq": 50, "entity": "rules", "key": "1", "op": "upsert", "data": DEMO_RULES.to_dict()}]
    for i in range(n):
        mid = f"01a20000-0000-7000-8000-{i:012d}"
        out.append(
            {
                "seq": 50,
                "entity": "member",
                "key": mid,
                "op": "upsert",
                "data": member_data(
                    mid,
                    name=f"会员{i}",
                    phone=f"1360000{i:04d}",
                    stored_value={"principal": i, "bonus": 0},
                ),
            }
        )
        out.append(
            {
                "seq": 50,
                "entity": "card",
                "key": f"N{i}",
                "op": "upsert",
                "data": {
                    "card_no": f"N{i}",
                    "member_id": mid,
                    "card_type": "普通卡",
                    "status": "active",
                },
            }
        )
    return out


def test_snapshot_into_a_fresh_store_and_into_one_with_members(till, tmp_path):
    chunks = snapshot_chunks(records(300), 50, "snap-1")
    assert load_snapshot(till.db, till.store, till.keys, assemble_snapshot(chunks), 50, NOW) == 601
    assert Member.select().count() == 300 and down_cursor() == 50
    m = member_svc.by_phone(till, "13600000299")
    assert (m.name, m.sv_principal) == ("会员299", 299)
    assert m.phone_enc is None and m.phone_tail == "0299"  # no phone held in clear
    assert member_svc.by_card("N7").name == "会员7"
    assert member_svc.search(till, "hy")  # pinyin keys were built (会员 -> hy)
    assert ledger_total(m.id, ("sv_principal",)) == 299
    # the same snapshot again over existing members: the per-record path, same result
    load_snapshot(till.db, till.store, till.keys, assemble_snapshot(chunks), 60, NOW)
    assert Member.select().count() == 300 and down_cursor() == 60
    assert ledger_total(m.id, ("sv_principal",)) == 299


def test_sync_config_defaults_and_errors():
    cfg = SyncConfig.from_dict({"broker_url": "mqtts://hq.example.cn", "ack_timeout": 2})
    assert (cfg.tls, cfg.port, cfg.ack_timeout, cfg.auth_timeout) == (True, 8883, 2.0, 1.5)
    with pytest.raises(ConfigError) as err:
        SyncConfig.from_dict({"brokr": "x", "window": 0, "batch_size": "9", "ca": "/nope.pem"})
    problems = err.value.details["problems"]
    assert "sync.brokr: unknown key" in problems
    assert any(p.startswith("sync.window") for p in problems)
    assert any(p.startswith("sync.batch_size") for p in problems)
    assert any(p.startswith("sync.ca") for p in problems)
    _, problems = config_problems({"sync": {"window": 500, "bogus": 1}})
    assert "sync.bogus: unknown key" in problems
    assert any(p.startswith("sync.window") for p in problems)
    _, problems = config_problems({"sync": {"broker_url": "mqtt://127.0.0.1:1884"}})
    assert problems == []


PROGRAMME = {
    "growth": 1234,
    "tier_since": "2026-11-01",
    "card_expires_on": "2027-10-31",
    "occupation": "教师",
    "preferences": ["无糖"],
    "anniversaries": [{"name": "结婚纪念日", "date": "2010-05-20", "calendar": "solar"}],
    "notes": "喜欢周末来",
    "tags": ["投诉"],
    "extra": {"车牌": "沪A12345"},
    "profile_score": 80,
    "referred_by": OTHER,
}


def _programme_fields(member_id: str) -> dict:
    m = Member.get_by_id(member_id)
    return {name: getattr(m, name) for name in PROGRAMME}


@pytest.mark.parametrize("path", ["change", "snapshot"])
def test_the_programme_member_fields_arrive_by_name_by_change_and_by_snapshot(till, path):
    """core.protocol.MEMBER_PROGRAMME_FIELDS travel under their own names; a record of an
    older HQ, without them, leaves the till's defaults."""
    member_id = "01a20000-0000-7000-8000-0000000000a1"
    data = member_data(member_id, "13700000011", **PROGRAMME)
    if path == "change":
        apply(till, Change(1, "member", member_id, "upsert", data))
    else:
        rec = {"seq": 5, "entity": "member", "key": member_id, "op": "upsert", "data": data}
        load_snapshot(till.db, till.store, till.keys, [rec], 5, NOW)
    assert _programme_fields(member_id) == PROGRAMME
    # the same member again from an older HQ: every programme field back to its default
    seq = down_cursor() + 1
    older = member_data(member_id, "13700000011")
    assert apply(till, Change(seq, "member", member_id, "upsert", older)) == (1, seq)
    got = _programme_fields(member_id)
    assert got["growth"] == 0 and got["tags"] is None and got["notes"] == ""


def test_every_entity_has_a_handler_and_a_newer_hqs_entity_is_skipped(till):
    """A page with an entity this till does not know (a newer HQ's) applies the rest and
    moves the cursor on, so the store keeps syncing; a name that is no entity name is
    still refused on the wire."""
    from core.errors import ProtocolError
    from core.protocol import CHANGE_ENTITIES, validate_change
    from edge.sync.apply import Applier

    assert [e for e in CHANGE_ENTITIES if not callable(getattr(Applier, f"_{e}", None))] == []
    newer = Change(1, "loyalty_game", "G1", "upsert", {"anything": 1})
    product = {"sku": "X9", "name": "新品", "unit_price": 990}
    assert apply(till, newer, Change(2, "product", "X9", "upsert", product)) == (2, 2)
    assert Product.get_by_id("X9").price == 990 and down_cursor() == 2
    # "alias" is the name of one of the applier's own methods, not an entity
    assert apply(till, Change(3, "alias", "a", "upsert", {}), start=3) == (1, 3)
    for bad in ("Member", "x" * 17, "a-b", "_member", ""):
        raw = {"seq": 4, "entity": bad, "key": "k", "op": "upsert", "data": {}}
        with pytest.raises(ProtocolError, match="entity"):
            validate_change(raw)
