"""The wire shapes: topics, envelopes, batches, acks, pages, snapshots, authorization."""

from __future__ import annotations

import pytest

from core import protocol as p
from core.errors import ProtocolError
from core.ids import uuid7


def item(seq: int, store: str = "S001", kind: str = "topup", over: dict | None = None) -> dict:
    raw = {
        "v": 1,
        "store": store,
        "seq": seq,
        "id": uuid7(),
        "kind": kind,
        "occurred_at": "2026-11-23T10:00:00+08:00",
        "rules_version": 1,
        "body": {
            "topup_id": "t1",
            "member_id": uuid7(),
            "principal": 100,
            "bonus": 0,
            "tender": "cash",
            "cashier": "1001",
        },
    }
    raw.update(over or {})
    return raw


@pytest.mark.parametrize(
    ("topic", "parsed"),
    [
        ("hy/v1/S001/up/tx", ("S001", "up", "tx")),
        ("hy/v1/store-2/down/ack", ("store-2", "down", "ack")),
    ],
)
def test_parse_store_topic(topic, parsed):
    assert p.parse_store_topic(topic) == parsed


@pytest.mark.parametrize(
    "topic", ["hy/v1/hq/state", "hy/v2/S1/up/tx", "hy/v1/S 1/up/tx", "hy/v1/hq/up/tx", "x"]
)
def test_parse_store_topic_rejects(topic):
    with pytest.raises(ProtocolError):
        p.parse_store_topic(topic)


def test_topic_helpers():
    assert p.up_topic("S1", "tx") == "hy/v1/S1/up/tx"
    assert p.down_topic("S1", "ack") == "hy/v1/S1/down/ack"
    assert p.hq_changes_topic() == "hy/v1/hq/chg"
    assert p.INGEST_SUBSCRIPTION == "$share/ingest/hy/v1/+/up/#"


def test_batch_roundtrip():
    payload = p.make_batch("S001", 1, [item(1), item(2)])
    batch = p.validate_batch(p.decode_json(payload))
    assert (batch.store, batch.epoch, batch.first_seq, batch.last_seq) == ("S001", 1, 1, 2)
    assert [p.validate_item(i).seq for i in batch.items] == [1, 2]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": 2}, "schema version"),
        ({"store": "hq"}, "store"),
        ({"epoch": 0}, "epoch"),
        ({"items": []}, "items"),
        ({"first_seq": 0}, "first_seq must be 1.."),
        ({"first_seq": 2, "last_seq": 1}, "seq range"),
        ({"last_seq": "2"}, "last_seq"),
    ],
)
def test_batch_rejects(change, message):
    raw = {"v": 1, "store": "S1", "epoch": 1, "first_seq": 1, "last_seq": 1, "items": [{}]}
    raw.update(change)
    with pytest.raises(ProtocolError, match=message):
        p.validate_batch(raw)


def test_make_batch_refuses_oversized():
    big = item(1)
    big["body"]["pad"] = "x" * p.MAX_PAYLOAD_BYTES
    with pytest.raises(ProtocolError, match="bytes"):
        p.make_batch("S001", 1, [big])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": 2}, "schema version"),
        ({"kind": "refund"}, "unknown kind"),
        ({"seq": 0}, "seq"),
        ({"seq": True}, "bool"),
        ({"id": "nope"}, "UUID"),
        ({"body": {"topup_id": "t"}}, "member_id"),
    ],
)
def test_item_rejects(change, message):
    with pytest.raises(ProtocolError, match=message):
        p.validate_item(item(1, over=change))


def test_ack_roundtrip():
    ack = p.Ack("S1", 1, 7, (p.Rejection(5, "unknown_kind", "kind 'x'"),))
    assert p.validate_ack(p.decode_json(p.encode_json(ack.to_dict()))) == ack


def test_ack_rewind_is_said_only_when_true():
    plain = p.Ack("S1", 1, 7)
    assert "rewind" not in plain.to_dict()
    rewind = p.Ack("S1", 1, 3, rewind=True)
    assert p.validate_ack(p.decode_json(p.encode_json(rewind.to_dict()))) == rewind
    with pytest.raises(ProtocolError, match="rewind"):
        p.validate_ack({**plain.to_dict(), "rewind": "yes"})


def test_ack_rejects_negative():
    with pytest.raises(ProtocolError):
        p.validate_ack({"v": 1, "store": "S1", "epoch": 1, "acked_through": -1, "rejected": []})


def test_hello_and_state():
    hello = p.Hello("S1", 1, 3, 10)
    assert p.validate_hello(hello.to_dict()) == hello
    assert (
        p.validate_hello({"v": 1, "store": "S1", "epoch": 1, "acked_through": 0}).down_cursor
        is None
    )
    state = p.PeerState(False, "2026-01-01T00:00:00+08:00")
    assert p.validate_state(state.to_dict()) == state
    with pytest.raises(ProtocolError):
        p.validate_state({"v": 1, "online": 1, "ts": "x"})


def test_change_page_roundtrip_and_order():
    changes = (p.Change(3, "member", "m", "upsert", {"a": 1}), p.Change(4, "card", "c", "upsert"))
    page = p.ChangePage(3, 4, changes, False, 9)
    assert p.validate_change_page(p.decode_json(p.encode_json(page.to_dict()))) == page
    bad = page.to_dict()
    bad["changes"].reverse()
    with pytest.raises(ProtocolError, match="order"):
        p.validate_change_page(bad)
    snap = p.ChangePage(0, 0, (), False, 9, snapshot_required=True)
    assert p.validate_change_page(snap.to_dict()).snapshot_required


@pytest.mark.parametrize("limit", [0, p.MAX_PAGE_CHANGES + 1, "5", True])
def test_change_request_limit(limit):
    with pytest.raises(ProtocolError, match="limit"):
        p.validate_change_request({"v": 1, "store": "S1", "after": 0, "limit": limit})


def test_a_change_of_a_newer_entity_is_valid_and_a_bad_entity_name_is_not():
    """A newer HQ's entity passes the wire check (the till skips it, tests/sync/test_apply.py);
    a name that cannot be an entity is refused."""
    change = p.validate_change(
        {"seq": 1, "entity": "weather", "key": "k", "op": "upsert", "data": {}}
    )
    assert change.entity == "weather"
    with pytest.raises(ProtocolError, match="entity"):
        p.validate_change({"seq": 1, "entity": "Weather!", "key": "k", "op": "upsert", "data": {}})


def test_snapshot_chunks_roundtrip():
    records = [
        {"entity": "member", "key": str(i), "op": "upsert", "seq": 5, "data": {"n": i}}
        for i in range(20000)
    ]
    chunks = p.snapshot_chunks(records, 5, "snap1")
    assert len(chunks) >= 1
    wire = [p.validate_snapshot_chunk(p.decode_json(p.encode_json(c.to_dict()))) for c in chunks]
    assert list(p.assemble_snapshot(reversed(wire))) == records
    if len(wire) > 1:
        with pytest.raises(ProtocolError, match="missing"):
            list(p.assemble_snapshot(wire[1:]))


def test_snapshot_detects_corruption():
    chunks = p.snapshot_chunks([{"a": 1}], 1, "s")
    bad = p.SnapshotChunk("s", 1, 0, 1, "0" * 64, chunks[0].data)
    with pytest.raises(ProtocolError, match="sha256"):
        list(p.assemble_snapshot([bad]))


def test_auth_request_and_response():
    req = p.AuthRequest("S1", "sale-1", uuid7(), "hold", 500, 10, ("C1",), "t")
    assert p.validate_auth_request(req.to_dict()) == req
    with pytest.raises(ProtocolError, match="action"):
        p.validate_auth_request({**req.to_dict(), "action": "spend"})
    with pytest.raises(ProtocolError, match="stored_value must be 0.."):
        p.validate_auth_request({**req.to_dict(), "stored_value": -1})
    resp = p.AuthResponse(
        "sale-1", "approved", "a1", stored_value_split={"principal": 1, "bonus": 0}
    )
    assert p.validate_auth_response(resp.to_dict()).approved


@pytest.mark.parametrize(
    ("mode", "limit", "balance", "spent", "allowed"),
    [
        ("online_only", 10000, 5000, 0, 0),
        ("floor_limit", 10000, 5000, 0, 5000),
        ("floor_limit", 10000, 50000, 3000, 7000),
        ("floor_limit", 10000, 50000, 12000, 0),
        ("floor_limit", 10000, -100, 0, 0),
    ],
)
def test_offline_allowance(mode, limit, balance, spent, allowed):
    policy = p.validate_offline_policy({"kind": "stored_value", "mode": mode, "daily_limit": limit})
    assert p.offline_allowance(policy, balance, spent) == allowed


REGISTRATION = {
    "member_id": uuid7(),
    "name": "张三",
    "phone": "13800000001",
    "registered_at": "2026-11-23T10:00:00+08:00",
}
A_HASH = "scrypt$16384$8$1$mpOvquO9GQMJIvpFRfJs8w==$5U9Kt5ZN31nxipQk6pM6lheaECMdztfuXIcvTR2PoX0="


@pytest.mark.parametrize("value", [None, A_HASH])
def test_registration_carries_a_password_hash_or_none(value):
    body = {**REGISTRATION, "password_hash": value}
    raw = item(1, kind="registration", over={"kind": "registration", "body": body})
    assert p.validate_item(raw).body["password_hash"] == value


@pytest.mark.parametrize("value", ["123456", "", 123456, "scrypt$1$8$1$$", f"{A_HASH}\n", "sha1$x"])
def test_registration_refuses_anything_but_a_hash(value):
    body = {**REGISTRATION, "password_hash": value}
    raw = item(1, kind="registration", over={"kind": "registration", "body": body})
    with pytest.raises(ProtocolError, match="password_hash"):
        p.validate_item(raw)


# ---- every integer bounded, every decode failure a ProtocolError (issue 9, defect 6) ----

HUGE = (10**30, 2**63, 2**62 + 1, -(2**63))
VALID = {
    "batch": (
        p.validate_batch,
        {"v": 1, "store": "S1", "epoch": 1, "first_seq": 1, "last_seq": 1, "items": [{}]},
        ("epoch", "first_seq", "last_seq"),
    ),
    "ack": (
        p.validate_ack,
        {"v": 1, "store": "S1", "epoch": 1, "acked_through": 1, "rejected": []},
        ("epoch", "acked_through"),
    ),
    "hello": (
        p.validate_hello,
        {"v": 1, "store": "S1", "epoch": 1, "acked_through": 0, "down_cursor": 0, "last_seq": 0},
        ("epoch", "acked_through", "down_cursor", "last_seq"),
    ),
    "state": (p.validate_state, {"v": 1, "online": True, "ts": "t", "epoch": 1}, ("epoch",)),
    "chgreq": (
        p.validate_change_request,
        {"v": 1, "store": "S1", "after": 0, "limit": 10},
        ("after", "limit"),
    ),
    "chg": (
        p.validate_change_page,
        {"v": 1, "from": 1, "to": 0, "changes": [], "more": False, "latest": 0},
        ("from", "to", "latest"),
    ),
    "snap": (
        p.validate_snapshot_chunk,
        {"v": 1, "snapshot_id": "s", "cursor": 0, "index": 0, "count": 1, "sha256": "", "data": ""},
        ("cursor", "index", "count"),
    ),
    "auth": (
        p.validate_auth_request,
        {
            "v": 1,
            "store": "S1",
            "sale_id": "s1",
            "member_id": uuid7(),
            "stored_value": 1,
            "points": 1,
        },
        ("stored_value", "points"),
    ),
    "offline_policy": (
        p.validate_offline_policy,
        {"kind": "points", "mode": "floor_limit", "daily_limit": 1},
        ("daily_limit",),
    ),
}
BOUNDED = [(name, key) for name, (_, _, keys) in VALID.items() for key in keys]


@pytest.mark.parametrize(("message", "key"), BOUNDED)
@pytest.mark.parametrize("value", HUGE)
def test_every_integer_on_the_wire_is_bounded(message, key, value):
    validate, raw, _ = VALID[message]
    validate(raw)  # the valid message passes
    with pytest.raises(ProtocolError) as caught:
        validate({**raw, key: value})
    assert caught.value.field == key


@pytest.mark.parametrize(
    ("message", "key", "top"),
    [
        ("batch", "epoch", p.MAX_EPOCH),
        ("batch", "last_seq", p.MAX_SEQ),
        ("hello", "acked_through", p.MAX_SEQ),
        ("hello", "epoch", p.MAX_EPOCH),
        ("chgreq", "after", p.MAX_SEQ),
        ("auth", "stored_value", p.MAX_AMOUNT),
    ],
)
def test_integer_bounds_are_inclusive(message, key, top):
    validate, raw, _ = VALID[message]
    validate({**raw, key: top})
    with pytest.raises(ProtocolError, match=key):
        validate({**raw, key: top + 1})


def test_ack_rejection_seq_is_bounded():
    raw = {"v": 1, "store": "S1", "epoch": 1, "acked_through": 1}
    with pytest.raises(ProtocolError, match="seq"):
        p.validate_ack({**raw, "rejected": [{"seq": 2**63, "code": "x", "reason": "y"}]})


def test_auth_coupons_and_response_split_are_bounded():
    validate, raw, _ = VALID["auth"]
    with pytest.raises(ProtocolError, match="coupons"):
        validate({**raw, "coupons": ["C"] * (p.MAX_COUPONS + 1)})
    with pytest.raises(ProtocolError, match="coupons"):
        validate({**raw, "coupons": ["x" * (p.MAX_CODE_CHARS + 1)]})
    answer = {"v": 1, "sale_id": "s", "status": "approved"}
    for split in (
        {"principal": 10**30, "bonus": 0},
        {"principal": 1},
        {"principal": -1, "bonus": 0},
    ):
        with pytest.raises(ProtocolError):
            p.validate_auth_response({**answer, "stored_value_split": split})
    with pytest.raises(ProtocolError, match="reason"):
        p.validate_auth_response({**answer, "reason": ["no"]})


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"[" * 200_000 + b"]" * 200_000, "bytes"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"a":' * 30_000 + b"1" + b"}" * 30_000, "nested too deeply"),
        (b'{"epoch":' + b"9" * 5000 + b"}", "not UTF-8 JSON"),
        (b'{"a": NaN}', "not UTF-8 JSON"),
        (b'{"a": -Infinity}', "not UTF-8 JSON"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b'{"a": "\xed\xa0\x80"}', "not UTF-8 JSON"),
        (b"", "not UTF-8 JSON"),
    ],
)
def test_decode_json_refuses_anything_it_cannot_read_as_protocol_error(payload, message):
    with pytest.raises(ProtocolError, match=message):
        p.decode_json(payload, limit=p.MAX_PAYLOAD_BYTES)


def test_lone_surrogates_are_found_and_made_safe():
    raw = p.decode_json(b'{"body": {"name": "\\ud800", "ok": ["a", {"\\udfff": 1}]}}')
    assert p.unencodable_field(raw, "item") == "item.body.name"
    assert p.unencodable_field({"ok": [{"\udfff": 1}]}) == "ok[0].\\udfff"
    assert p.unencodable_field({"fine": ["张三", 1, None]}) is None
    # what the fast path (orjson) refuses for another reason is walked, not passed
    assert p.unencodable_field({"n": 10**30, "deep": [[["\ud800"]]]}) == "deep[0][0][0]"
    assert p.unencodable_field({"n": 10**30, "deep": [[[]]] * 3}) is None
    assert p.safe_text("a\ud800b") == "a\\ud800b"
    assert p.safe_text("张三") == "张三"
