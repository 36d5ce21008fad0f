"""What a store receives about members (issue 10, invariant 8): no phone in clear, only the
chain's keyed lookup hash and the last four digits; the key and snapshots only to the store
that asked, on its own topic; nothing for a store HQ does not know. SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import stat

import pytest

from core import protocol as p
from core.errors import ConfigError, ProtocolError
from core.ids import uuid7
from core.phone import PhoneHasher, lookup_key_id, phone_lookup_hash
from hq.changes import changes_after, snapshot_records
from hq.config import HqConfig
from hq.ingest import ingest_batch
from hq.lookup import ChainLookup, chain_lookup, create_lookup_key
from hq.models import DeadLetter, Store
from hq.worker import IngestWorker, publish_changes
from tests.hq.conftest import hq_config
from tests.hq.edge_sim import Items, RecordingClient, message

NOW = dt.datetime(2026, 12, 4, 2, 0)
PHONES = {"A": "13800000101", "B": "13900000202"}


@pytest.fixture
def worker(hq_db, hq_db_url) -> IngestWorker:
    """The real worker's dispatch, with no broker: what it publishes is recorded."""
    w = IngestWorker(hq_config(hq_db_url, None), db=hq_db)
    w.client = RecordingClient()
    return w


def register_at(db, store: str, phone: str) -> tuple[str, list[p.Change]]:
    mid = uuid7()
    batch = p.make_batch(
        store, 1, [Items(store).registration(mid, phone, card_no=f"K{phone[-4:]}")]
    )
    outcome = ingest_batch(db, p.up_topic(store, "tx"), store, batch, NOW)
    assert outcome.ack is not None and outcome.ack.rejected == ()
    return mid, outcome.changes


def published_text(client: RecordingClient) -> str:
    """Every payload HQ published, as one text to search (snapshot records are gzip'd:
    tests search them unpacked too)."""
    return "\n".join(payload.decode() for _, payload, _ in client.published)


def snapshot_of(client: RecordingClient, store: str) -> tuple[dict, list[dict]]:
    chunks = [
        p.validate_snapshot_chunk(p.decode_json(payload))
        for payload, _ in client.on(p.down_topic(store, "snap"))
    ]
    assert chunks, f"no snapshot for {store}"
    return chunks[0].lookup_key, list(p.assemble_snapshot(chunks))


def test_the_lookup_hash_is_keyed_and_the_key_has_a_public_id():
    key, other = os.urandom(32), os.urandom(32)
    phone = "13800000101"
    assert phone_lookup_hash(key, phone) == phone_lookup_hash(key, phone)
    assert phone_lookup_hash(key, phone) != phone_lookup_hash(other, phone)
    assert phone not in phone_lookup_hash(key, phone) and len(phone_lookup_hash(key, phone)) == 64
    assert lookup_key_id(key) != lookup_key_id(other) and len(lookup_key_id(key)) == 8
    with pytest.raises(Exception, match="32 bytes"):
        lookup_key_id(b"short")


@pytest.mark.parametrize("key_size", [32, 64, 65])
def test_the_precomputed_hasher_is_hmac_sha256(key_size):
    key = os.urandom(key_size)
    hasher = PhoneHasher(key)
    for phone in ("13800000101", "19999999999", "10000000000"):
        assert hasher(phone) == hmac.new(key, phone.encode(), hashlib.sha256).hexdigest()
        if key_size == 32:
            assert hasher(phone) == phone_lookup_hash(key, phone)


def test_the_key_file_is_made_once_with_mode_0600(tmp_path):
    path = tmp_path / "keys" / "lookup.key"
    assert create_lookup_key(path) is True
    first = path.read_bytes()
    assert create_lookup_key(path) is False and path.read_bytes() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(first) == 32
    lookup = ChainLookup(lambda: (path, False))
    assert lookup.key == first and lookup.key_id == lookup_key_id(first)


def test_a_key_systemd_should_hand_over_is_never_made_up(tmp_path, monkeypatch):
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    config = HqConfig(database_url="postgresql://hq@db/hq")
    assert config.lookup_key_path() == tmp_path / "lookup.key"
    with pytest.raises(ConfigError, match="huiyuan-hq init-lookup-key"):
        _ = chain_lookup(config).key
    assert not (tmp_path / "lookup.key").exists()
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(ConfigError, match="PostgreSQL") as info:
        config.lookup_key_path()
    assert info.value.field == "lookup_key_file"
    sqlite = HqConfig(database_url=f"sqlite:///{tmp_path}/hq/hq.sqlite3")
    assert sqlite.lookup_key_path() == tmp_path / "hq" / "lookup.key"


def test_a_snapshot_obtained_by_a_store_holds_no_phone_in_clear(worker, hq_db):
    """The issue's attack: whatever a store obtains, it holds no member's phone, its own
    members' included; it holds the hash and last four digits, and the key on its topic."""
    ids = {store: register_at(hq_db, store, phone)[0] for store, phone in PHONES.items()}
    worker.dispatch(message(p.up_topic("A", "snapreq"), p.encode_json({"v": 1, "store": "A"})))
    header, records = snapshot_of(worker.client, "A")
    text = json.dumps(records, ensure_ascii=False) + published_text(worker.client)
    for phone in PHONES.values():
        assert phone not in text
    key = base64.b64decode(header["key"])
    assert header["id"] == lookup_key_id(key) == worker.lookup.key_id
    members = {r["key"]: r["data"] for r in records if r["entity"] == "member"}
    for store, phone in PHONES.items():
        data = members[ids[store]]
        assert "phone" not in data
        assert data["phone_hash"] == phone_lookup_hash(key, phone)
        assert (data["phone_key_id"], data["phone_last4"]) == (header["id"], phone[-4:])
    # only the store that asked received anything, on its own topic
    assert {topic for topic, _, _ in worker.client.published} == {p.down_topic("A", "snap")}


def test_change_pages_and_live_pushes_carry_no_phone(worker, hq_db):
    mid, changes = register_at(hq_db, "A", PHONES["A"])
    client = RecordingClient()
    publish_changes(client, changes, worker.lookup)
    with hq_db.atomic():
        page = changes_after(0 if not changes else changes[0].seq - 1, 50, worker.lookup)
    pushed = [
        p.validate_change_page(p.decode_json(payload))
        for payload, _ in client.on(p.hq_changes_topic())
    ]
    for records in (page.changes, *[pg.changes for pg in pushed]):
        member = next(c for c in records if c.entity == "member" and c.key == mid)
        assert "phone" not in member.data
        assert member.data["phone_last4"] == PHONES["A"][-4:]
    assert PHONES["A"] not in published_text(client)
    # the change log at HQ keeps the whole state: only what goes down is cut
    with hq_db.atomic():
        _, records = snapshot_records(hq_db, worker.lookup)
        assert all("phone" not in r["data"] for r in records if r["entity"] == "member")


@pytest.mark.parametrize("name", ["snapreq", "chgreq"])
def test_a_request_from_a_store_hq_does_not_know_gets_nothing(worker, hq_db, name):
    register_at(hq_db, "A", PHONES["A"])
    body = {"v": 1, "store": "NOSUCH"} | ({"after": 0} if name == "chgreq" else {})
    worker.dispatch(message(p.up_topic("NOSUCH", name), p.encode_json(body)))
    assert worker.client.published == []
    [letter] = DeadLetter.select().where(DeadLetter.store == "NOSUCH")
    assert letter.code == "unknown_store" and "NOSUCH" in letter.reason
    assert Store.get_or_none(Store.code == "NOSUCH") is None  # and it is not made known


@pytest.mark.parametrize("name", ["snapreq", "chgreq"])
def test_a_request_naming_another_store_is_refused_as_forged(worker, hq_db, name):
    register_at(hq_db, "A", PHONES["A"])
    register_at(hq_db, "B", PHONES["B"])
    body = {"v": 1, "store": "A"} | ({"after": 0} if name == "chgreq" else {})
    worker.dispatch(message(p.up_topic("B", name), p.encode_json(body)))
    assert worker.client.published == []
    [letter] = DeadLetter.select().where(DeadLetter.store == "B")
    assert letter.code == "forged"


@pytest.mark.parametrize(
    "header",
    [
        {"id": "0000000g", "key": base64.b64encode(bytes(32)).decode()},
        {"id": "00000000", "key": base64.b64encode(bytes(31)).decode()},
        {"id": "00000000", "key": "not base64!"},
        {"id": "00000000"},
        "key",
    ],
)
def test_a_malformed_lookup_key_header_is_refused(header):
    chunk = p.snapshot_chunks([], 0, uuid7(), None)[0].to_dict() | {"lookup_key": header}
    with pytest.raises(ProtocolError) as info:
        p.validate_snapshot_chunk(chunk)
    assert info.value.field == "lookup_key"


def test_init_lookup_key_makes_the_key_once(tmp_path):
    from click.testing import CliRunner

    from hq.cli import main

    target = tmp_path / "creds" / "lookup.key"
    args = ["--database-url", f"sqlite:///{tmp_path}/hq.sqlite3", "init-lookup-key"]
    first = CliRunner().invoke(main, [*args, "--file", str(target)])
    assert first.exit_code == 0, first.output
    key = target.read_bytes()
    assert lookup_key_id(key) in first.output and "made" in first.output
    again = CliRunner().invoke(main, [*args, "--file", str(target)])
    assert "kept" in again.output and target.read_bytes() == key
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
