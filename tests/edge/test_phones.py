"""Phones at the store (invariant 8): found through the chain's lookup hash, held in clear
(encrypted) only for this store's registrations HQ has not acknowledged, hashed again
when the chain key arrives; schema 2 -> 3."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest

from core.errors import NotFound, ProtocolError
from core.protocol import Change
from edge import phones
from edge.migrate import migrate_database
from edge.models import SCHEMA_VERSION, Member, Outbox, Setting
from edge.services import members as member_svc
from edge.services.context import open_till
from edge.sync.apply import apply_page, ensure_sync_tables
from tests.edge.conftest import make_config
from tests.lookup_keys import (
    TEST_LOOKUP_KEY,
    give_lookup_key,
    hq_phone,
    lookup_header,
)
from tests.sync.test_apply import member_data, page

NOW = "2026-12-04T10:00:00+08:00"
OWN, OTHER = "13800000501", "13900000502"
OTHER_ID = "01a20000-0000-7000-8000-0000000000b2"


@pytest.fixture
def till(tmp_path, clock):
    t = open_till(make_config(tmp_path, store={"code": "S1"}), clock=clock, create_key=True)
    ensure_sync_tables(t.db)
    yield t
    t.db.close()


def register(till, name: str, phone: str) -> str:
    return member_svc.register(
        till, member_svc.Registration.from_request({"name": name, "phone": phone}), "1001"
    ).id


def ack_all(at: str) -> None:
    Outbox.update(acked=True, acked_at=at).execute()


def held_phones() -> dict[str, bool]:
    return {m.id: m.phone_enc is not None for m in Member.select()}


def test_a_registration_before_the_key_is_found_then_hashed_again_when_it_arrives(till):
    own = register(till, "甲", OWN)
    assert Member.get_by_id(own).phone_hash.startswith(phones.LOCAL_PREFIX)
    assert member_svc.by_phone(till, OWN).id == own  # found before the key arrives
    give_lookup_key(till, NOW)
    member = Member.get_by_id(own)
    assert member.phone_hash == hq_phone(OWN)["phone_hash"]  # the chain's, as HQ will send
    assert member_svc.by_phone(till, OWN).id == own  # found after
    assert member_svc.phone_of(till, member) == OWN  # unacknowledged: the phone stays
    assert phones.held_lookup_key(till.keys) == (lookup_header()["id"], TEST_LOOKUP_KEY)
    stored = Setting.get_by_id(phones.LOOKUP_KEY_SETTING).value
    assert lookup_header()["key"] not in str(stored)  # kept encrypted under the member key


def test_a_registration_keeps_its_phone_until_hq_has_acked_it_long_enough(till, clock):
    give_lookup_key(till, NOW)
    own = register(till, "甲", OWN)
    assert Member.get_by_id(own).phone_hash == hq_phone(OWN)["phone_hash"]
    # HQ's echo of the registration: the hash, not the phone; the held phone stays
    apply_page(
        till.db,
        "S1",
        till.keys,
        page(Change(1, "member", own, "upsert", member_data(own, OWN))),
        NOW,
    )
    assert held_phones() == {own: True}
    acked_at = "2026-12-04T10:00:00+08:00"
    ack_all(acked_at)
    assert phones.prune_phones(till.db, "2026-12-02T10:00:00+08:00") == 0  # within the window
    assert held_phones() == {own: True}
    assert phones.prune_phones(till.db, acked_at) == 1  # acknowledged before the cutoff
    assert held_phones() == {own: False}
    member = member_svc.by_phone(till, OWN)  # still found, through the hash
    assert (member.id, member.phone_tail) == (own, OWN[-4:])
    assert member_svc.summary(till, member)["phone"] == "*******0501"


def test_another_stores_member_is_found_by_hash_and_never_held(till):
    give_lookup_key(till, NOW)
    apply_page(
        till.db,
        "S1",
        till.keys,
        page(Change(1, "member", OTHER_ID, "upsert", member_data(OTHER_ID, OTHER))),
        NOW,
    )
    found = member_svc.by_phone(till, OTHER)
    assert (found.id, found.phone_enc, found.phone_tail) == (OTHER_ID, None, "0502")
    with pytest.raises(NotFound):
        member_svc.by_phone(till, "13700000000")


def test_a_store_without_the_key_or_with_another_one_needs_a_snapshot(till):
    mine = Change(1, "member", OTHER_ID, "upsert", member_data(OTHER_ID, OTHER))
    product = Change(2, "product", "P1", "upsert", {"sku": "P1", "unit_price": 1})
    assert phones.records_need_key([mine, product]) is True  # no key held
    assert phones.records_need_key([product]) is False
    give_lookup_key(till, NOW)
    assert phones.records_need_key([mine, product]) is False
    rotated = Change(
        3, "member", OTHER_ID, "upsert", member_data(OTHER_ID, OTHER) | hq_phone(OTHER, bytes(32))
    )
    assert phones.records_need_key([rotated]) is True


def test_a_header_whose_id_is_not_its_keys_is_refused(till):
    header = lookup_header() | {"id": "00000000"}
    with pytest.raises(ProtocolError), till.db.atomic():
        phones.install_lookup_key(till.db, till.keys, header, NOW)
    assert phones.held_key_id() is None


def _to_schema_2(path) -> None:  # noqa: ANN001
    """What schema 2 held: phone hashes under the store's own key, every member's phone."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE member SET phone_hash = substr(phone_hash, 2) WHERE phone_hash LIKE 'L%'")
    conn.execute('DROP INDEX "member_phone_held"')
    conn.execute("PRAGMA user_version = 2")
    conn.close()


def test_a_schema_2_database_migrates_and_drops_other_stores_phones_when_the_key_arrives(
    tmp_path, clock
):
    cfg = make_config(tmp_path, store={"code": "S1"})
    till = open_till(cfg, clock=clock, create_key=True)
    ensure_sync_tables(till.db)
    own = register(till, "甲", OWN)
    acked = register(till, "乙", "13800000503")
    ack_all("2026-11-01T10:00:00+08:00")  # acknowledged a month ago
    pending = register(till, "丙", "13800000504")  # not yet
    # a member another store registered, as schema 2 held it: its phone encrypted here
    with till.db.atomic():
        Member.create(
            id=OTHER_ID,
            name="丁",
            name_pinyin="ding",
            name_initials="d",
            phone_hash=till.keys.lookup_hash(OTHER),
            phone_enc=till.keys.encrypt(OTHER, OTHER_ID),
            phone_tail="0502",
            registered_at=NOW,
            registered_store="S9",
            updated_at=NOW,
        )
    till.db.close()
    _to_schema_2(cfg.db_path)

    before, after, aside = migrate_database(cfg.db_path)  # huiyuan-edge migrate
    assert (before, after) == (2, SCHEMA_VERSION) and aside is not None
    till = open_till(cfg, clock=clock)
    try:
        with sqlite3.connect(aside) as copy:
            assert copy.execute("PRAGMA user_version").fetchone()[0] == 2
        assert till.db.execute_sql("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        # before the key arrives every member is found as before
        for phone, mid in ((OWN, own), (OTHER, OTHER_ID), ("13800000504", pending)):
            assert member_svc.by_phone(till, phone).id == mid
        give_lookup_key(till, NOW)
        # after: every member found by the chain's hash; only the unacknowledged phones held
        for phone, mid in ((OWN, own), (OTHER, OTHER_ID), ("13800000503", acked)):
            member = member_svc.by_phone(till, phone)
            assert member.id == mid and member.phone_hash == hq_phone(phone)["phone_hash"]
        assert held_phones() == {own: False, acked: False, pending: True, OTHER_ID: False}
        assert member_svc.phone_of(till, Member.get_by_id(pending)) == "13800000504"
        # a registration unacknowledged at migration time is in the outbox, phone and all
        assert "13800000504" in Outbox.get(Outbox.kind == "registration", Outbox.seq == 3).payload
    finally:
        till.db.close()


def test_keep_since_is_the_window_before_now():
    now = dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert phones.keep_since(now, 48) == "2026-12-02T10:00:00+08:00"
