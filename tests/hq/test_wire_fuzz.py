"""Property: whatever arrives on any up topic ends applied, refused with a reason, or
answered, and never blocks its store (issue 9, defect 6).

Random and hostile messages (huge integers, deep nesting, wrong types, lone surrogates,
huge strings, random bytes, valid envelopes around garbage items) go through the real
worker's dispatch on SQLite and PostgreSQL. After each one: dispatch did not raise;
there is a new dead letter with a code and a reason, or HQ published an answer the
store can read (an ack, a change page, snapshot chunks, an authorization answer), or
the message was applied (a store state); and a batch whose envelope is valid is
acknowledged through every item it carries from the store's cursor on, each applied or
rejected with a reason."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import protocol as p
from core.errors import ProtocolError
from core.ids import uuid7
from hq.models import DeadLetter, Store
from hq.worker import IngestWorker
from tests.hq.conftest import hq_config
from tests.hq.edge_sim import Items, RecordingClient, auth_properties, message

HUGE_INTS = st.sampled_from(
    [0, -1, 1, 2**31 - 1, 2**31, 2**62, 2**62 + 1, 2**63 - 1, 2**63, -(2**63), 10**30, 10**10 + 1]
) | st.integers(min_value=-(2**70), max_value=2**70)
HOSTILE_TEXT = st.text(max_size=10) | st.sampled_from(
    ["\ud800", "a\udfffb", "", "张三", "x" * 70_000, "hq", "../../etc", "S1\u0000"]
)
scalars = (
    st.none()
    | st.booleans()
    | HUGE_INTS
    | st.floats(allow_nan=True, allow_infinity=True)
    | HOSTILE_TEXT
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(HOSTILE_TEXT, inner, max_size=4),
    max_leaves=10,
)
nested = st.integers(min_value=500, max_value=110_000).flatmap(
    lambda n: st.sampled_from([b"[" * n + b"]" * n, b'{"a":' * min(n, 40_000), b"[" * n])
)
NAMES = ("tx", "hello", "auth", "chgreq", "snapreq", "state")
_codes = itertools.count()


def dumps(obj: Any) -> bytes:
    """JSON as a hostile sender would write it: lone surrogates as escapes, NaN allowed."""
    return json.dumps(obj, ensure_ascii=True).encode()


def template(name: str, store: str) -> dict[str, Any]:
    """A valid message for ``name``, to be spoiled."""
    return {
        "tx": {"v": 1, "store": store, "epoch": 1, "first_seq": 1, "last_seq": 1, "items": []},
        "hello": {"v": 1, "store": store, "epoch": 1, "acked_through": 0, "down_cursor": 0},
        "auth": {
            "v": 1,
            "store": store,
            "sale_id": uuid7(),
            "member_id": uuid7(),
            "action": "hold",
            "stored_value": 100,
            "points": 0,
        },
        "chgreq": {"v": 1, "store": store, "after": 0, "limit": 10},
        "snapreq": {"v": 1, "store": store},
        "state": {"v": 1, "online": True, "ts": "2026-11-25T10:00:00+08:00", "epoch": 1},
    }[name]


@st.composite
def spoiled(draw, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with up to three fields replaced by hostile values or removed."""
    out = dict(base)
    for key in draw(st.lists(st.sampled_from(sorted(base)), max_size=3, unique=True)):
        if draw(st.booleans()):
            out[key] = draw(json_values)
        else:
            out.pop(key)
    return out


@st.composite
def batch_items(draw, store: str) -> list[Any]:
    """Contiguous seqs from 1: valid registrations and top-ups, spoiled ones, garbage."""
    items = Items(store)
    member = uuid7()
    out: list[Any] = []
    for i in range(draw(st.integers(min_value=1, max_value=6))):
        valid = items.registration(member, f"139{i:08d}") if i == 0 else items.topup(member, 100)
        choice = draw(st.sampled_from(["valid", "spoiled", "body", "garbage"]))
        if choice == "spoiled":
            valid = {**draw(spoiled({k: v for k, v in valid.items() if k != "seq"})), "seq": i + 1}
        elif choice == "body":
            valid["body"] = draw(spoiled(valid["body"]))
        elif choice == "garbage":
            valid = draw(json_values)
        out.append(valid)
    return out


@st.composite
def messages(draw) -> tuple[str, str, bytes, Any]:
    store = f"F{next(_codes)}"
    name = draw(st.sampled_from(NAMES))
    kind = draw(st.sampled_from(["bytes", "nested", "json", "spoiled", "valid"]))
    if kind == "bytes":
        payload = draw(st.binary(max_size=64))
    elif kind == "nested":
        payload = draw(nested)
    elif kind == "json":
        payload = dumps(draw(json_values))
    else:
        body = template(name, store)
        if name == "tx":
            body["items"] = draw(batch_items(store))
            body["last_seq"] = len(body["items"])
        if kind == "spoiled":
            body = draw(spoiled(body))
        payload = dumps(body)
    props = None
    if name == "auth":
        props = draw(st.sampled_from([None, "own", "other"]))
        if props is not None:
            props = auth_properties(store if props == "own" else "OTHER")
    return store, name, payload, props


def readable_batch(store: str, payload: bytes) -> p.Batch | None:
    """The batch, if HQ must read it: a valid envelope from this store, within limits."""
    try:
        batch = p.validate_batch(p.decode_json(payload, limit=p.MAX_READ_BYTES))
    except ProtocolError:
        return None
    return batch if batch.store == store else None


def contiguous_from_one(batch: p.Batch) -> int:
    """The last seq of the run 1, 2, ... that the batch's items carry (usable seqs only)."""
    seqs = {
        i["seq"]
        for i in batch.items
        if isinstance(i, dict) and type(i.get("seq")) is int and i["seq"] >= 1
    }
    top = 0
    while top + 1 in seqs:
        top += 1
    return top


VALIDATE_ANSWER = {
    "ack": p.validate_ack,
    "chg": p.validate_change_page,
    "snap": p.validate_snapshot_chunk,
    "auth": p.validate_auth_response,
}


@pytest.fixture
def worker(hq_db, hq_db_url) -> IngestWorker:
    w = IngestWorker(hq_config(hq_db_url, None), db=hq_db)
    w.client = RecordingClient()
    return w


def check_one(worker: IngestWorker, store: str, name: str, payload: bytes, props: Any) -> None:
    letters_before = DeadLetter.select().count()
    published_before = len(worker.client.published)
    worker.dispatch(message(p.up_topic(store, name), payload, props))  # never raises
    letters = list(DeadLetter.select().order_by(DeadLetter.id).offset(letters_before))
    answers = worker.client.published[published_before:]
    for letter in letters:
        assert letter.code and letter.reason, "a refusal says why"
    for topic, body, _ in answers:
        # whatever HQ publishes, the store can read
        assert len(body) <= p.MAX_PAYLOAD_BYTES, topic
        suffix = topic.rsplit("/", 1)[1]
        if suffix in VALIDATE_ANSWER:
            VALIDATE_ANSWER[suffix](p.decode_json(body))
    state = Store.get_or_none(Store.code == store)
    applied_state = name == "state" and state is not None and state.last_seen is not None
    assert letters or answers or applied_state, f"{name} {payload[:200]!r}: nothing came of it"
    if name == "auth" and props is not None and props.ResponseTopic == p.down_topic(store, "auth"):
        assert [t for t, _, _ in answers if t == p.down_topic(store, "auth")], "auth unanswered"
    if name == "tx" and (batch := readable_batch(store, payload)) is not None:
        acks = [p.decode_json(b) for t, b, _ in answers if t == p.down_topic(store, "ack")]
        assert acks, "a readable batch is acknowledged"
        ack = p.validate_ack(acks[-1])
        assert ack.acked_through >= contiguous_from_one(batch), "the batch blocked its store"
        rejected = {r.seq for r in ack.rejected}
        refused_letters = {d.seq for d in letters if d.seq is not None}
        assert rejected <= refused_letters, "every rejection has its dead letter"


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(msg=messages())
def test_every_message_on_every_up_topic_ends_applied_refused_or_answered(worker, msg):
    check_one(worker, *msg)


def test_the_property_holds_for_the_hand_picked_worst_cases(worker):
    """The cases the issue names, always run (hypothesis may not draw them)."""
    items = Items("FW")
    ok = items.registration(uuid7(), "13900000001")
    big = items.topup(ok["body"]["member_id"], 1)
    big["body"]["principal"] = 10**30
    cases = [
        ("tx", dumps({**template("tx", "FW"), "items": [ok, big], "last_seq": 2}), None),
        ("tx", dumps({**template("tx", "FW"), "epoch": 2**63}), None),
        ("tx", b"[" * 200_000, None),
        ("hello", dumps({**template("hello", "FW"), "acked_through": 10**30}), None),
        ("chgreq", dumps({**template("chgreq", "FW"), "after": 2**63}), None),
        ("auth", dumps({**template("auth", "FW"), "points": 2**63}), auth_properties("FW")),
        ("snapreq", b'{"v": 1, "store": "FW", "x": ' + b"[" * 50_000, None),
        ("state", dumps({**template("state", "FW"), "epoch": 10**30}), None),
    ]
    for name, payload, props in cases:
        check_one(worker, "FW", name, payload, props)
