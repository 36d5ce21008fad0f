"""A member registered at one store is found by phone at another through the chain's lookup
hash, and no store's database holds another store's member's phone (issue 10, invariant 8).
Real broker, real sync agents, HQ on SQLite and PostgreSQL."""

from __future__ import annotations

from edge.models import Member as EdgeMember
from edge.phones import LOCAL_PREFIX, held_key_id
from hq.models import Member as HqMember
from tests.sync.conftest import new_code, start_worker
from tests.sync.helpers import StoreBox, wait_until

NEW_PHONE = "13900000611"


def file_bytes(store: StoreBox) -> bytes:
    """Everything the store's database files hold, WAL included."""
    path = store.till.config.db_path
    return b"".join(
        p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists()
    )


def test_a_registration_at_a_is_found_by_phone_at_b_and_b_holds_no_phone(
    tmp_path, mosquitto, hq_db_url, stores
):
    worker = start_worker(hq_db_url, mosquitto)
    try:
        a = StoreBox(tmp_path / "a", new_code("A"), mosquitto)
        b = StoreBox(tmp_path / "b", new_code("B"), mosquitto)
        stores += [a, b]
        a.load_staff_and_products()
        b.load_staff_and_products()
        new_id = a.register("赵六", NEW_PHONE)
        # at A before anything is sent: hashed with A's own key, found by phone
        assert a.member_by_phone(NEW_PHONE).id == new_id
        assert a.member(new_id).phone_hash.startswith(LOCAL_PREFIX)
        a.start_agent()
        b.start_agent()
        wait_until(lambda: a.pending() == 0, 30, "A's registration acknowledged")
        assert HqMember.get_by_id(new_id).phone == NEW_PHONE  # HQ holds the number
        # A asked for a snapshot (HQ's echo was hashed with a key A did not hold) and
        # hashed its own member again with the chain's key: found after the ack too
        wait_until(lambda: a.query(held_key_id), 30, "the chain key at A")
        wait_until(
            lambda: not a.member(new_id).phone_hash.startswith(LOCAL_PREFIX), 30, "rehash at A"
        )
        assert a.member_by_phone(NEW_PHONE).id == new_id
        assert a.member(new_id).phone_enc is not None  # acked within the window: kept
        # B finds the member by phone through the hash, and holds no phone of it
        seen = wait_until(lambda: b.member_by_phone(NEW_PHONE), 30, "赵六 at store B")
        assert seen.id == new_id and seen.phone_tail == NEW_PHONE[-4:]
        assert seen.phone_enc is None
        assert seen.phone_hash == a.member(new_id).phone_hash  # one hash across the chain
        assert (
            b.query(lambda: EdgeMember.select().where(EdgeMember.phone_enc.is_null(False)).count())
            == 0
        )
        b.stop_agent()
        assert NEW_PHONE.encode() not in file_bytes(b)
    finally:
        worker.stop()
