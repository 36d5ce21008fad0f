"""Balance digests: the bucket function, the bucket hashes, and the messages' validators."""

from __future__ import annotations

import hashlib

import pytest

from core.digest import (
    DEFAULT_BUCKETS,
    EMPTY_HASH,
    MAX_BUCKETS,
    MAX_ROWS,
    DigestRequest,
    DigestRows,
    Figures,
    LedgerFix,
    MemberRow,
    StoreDigest,
    bucket_digests,
    bucket_of,
    chunk_rows,
    row_line,
    validate_digest_request,
    validate_digest_rows,
    validate_ledger_fix,
    validate_store_digest,
)
from core.errors import ProtocolError
from core.protocol import decode_json, encode_json

REQ = "01a24206-80c5-7ea5-ae23-56a3ab6ee760"
ZHANG = "01a24206-6809-7bec-9330-c0729b50c2d9"
LI = "01a24206-6809-7bec-9330-c0729b50c2da"


@pytest.mark.parametrize(
    ("member_id", "buckets"),
    [(ZHANG, 256), (LI, 256), ("m1", 16), (ZHANG, 1), (ZHANG, MAX_BUCKETS)],
)
def test_bucket_is_the_first_four_bytes_of_sha256_of_the_id(member_id, buckets):
    expected = int(hashlib.sha256(member_id.encode()).hexdigest()[:8], 16) % buckets
    assert bucket_of(member_id, buckets) == expected


def test_figures_from_a_points_total_carry_the_debt():
    assert Figures.from_total(100, 20, -30) == Figures(100, 20, -30, 30)
    assert Figures.from_total(0, 0, 45) == Figures(0, 0, 45, 0)


def test_a_bucket_hash_covers_its_members_sorted_lines():
    rows = [(LI, Figures(500, 0, 10, 0)), (ZHANG, Figures(1000, 200, -5, 5))]
    rows.sort()
    digests = bucket_digests(rows, 1)
    expected = hashlib.sha256(b"".join(row_line(m, f) for m, f in rows)).hexdigest()[:32]
    assert digests == [(2, expected)]
    assert row_line(ZHANG, Figures(1000, 200, -5, 5)) == f"{ZHANG}|1000|200|-5|5\n".encode()


def test_equal_figures_give_equal_digests_and_one_fen_changes_one_bucket():
    rows = sorted((f"m{i:04d}", Figures(i * 100, i, i % 7, 0)) for i in range(500))
    before = bucket_digests(rows, DEFAULT_BUCKETS)
    assert bucket_digests(list(rows), DEFAULT_BUCKETS) == before
    changed = [(m, f._replace(sv_bonus=f.sv_bonus + 1) if m == "m0042" else f) for m, f in rows]
    after = bucket_digests(changed, DEFAULT_BUCKETS)
    differ = [b for b in range(DEFAULT_BUCKETS) if before[b] != after[b]]
    assert differ == [bucket_of("m0042", DEFAULT_BUCKETS)]
    assert after[differ[0]][0] == before[differ[0]][0]  # same count, other hash
    empty = [b for b in range(DEFAULT_BUCKETS) if before[b][0] == 0]
    assert all(before[b][1] == EMPTY_HASH for b in empty)


def test_rows_out_of_member_id_order_are_refused():
    with pytest.raises(ValueError, match="ascending"):
        bucket_digests([("b", Figures(0, 0, 0, 0)), ("a", Figures(0, 0, 0, 0))], 4)
    with pytest.raises(ValueError, match="ascending"):
        bucket_digests([("a", Figures(0, 0, 0, 0)), ("a", Figures(0, 0, 0, 0))], 4)


def digest(**over) -> dict:
    d = StoreDigest(
        store="S001",
        at="2026-12-04T18:00:00+08:00",
        buckets=4,
        down_cursor=17,
        acked_through=12,
        last_seq=12,
        pending=(2,),
        shown=((1, "a" * 32), (0, EMPTY_HASH), (3, "b" * 32), (0, EMPTY_HASH)),
        ledger=((1, "a" * 32), (0, EMPTY_HASH), (3, "c" * 32), (0, EMPTY_HASH)),
    ).to_dict()
    d.update(over)
    return d


def test_a_digest_goes_through_the_wire_unchanged():
    raw = digest()
    back = validate_store_digest(decode_json(encode_json(raw)))
    assert back.to_dict() == raw
    assert back.shown[2] == (3, "b" * 32)


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"buckets": 0}, "buckets"),
        ({"buckets": MAX_BUCKETS + 1}, "buckets"),
        ({"buckets": True}, "buckets"),
        ({"down_cursor": -1}, "down_cursor"),
        ({"down_cursor": 2**63}, "down_cursor"),
        ({"acked_through": "7"}, "acked_through"),
        ({"last_seq": 10**30}, "last_seq"),
        ({"pending": [4]}, "pending"),
        ({"pending": [True]}, "pending"),
        ({"pending": "2"}, "pending"),
        ({"shown": [[1, "a" * 32]] * 3}, "shown"),  # one bucket short
        ({"shown": [[1, "a" * 31]] * 4}, "shown"),  # hash too short
        ({"shown": [[1, "a" * 33]] * 4}, "shown"),  # too long
        ({"shown": [[1, "A" * 32]] * 4}, "shown"),  # not lowercase hex
        ({"ledger": [[-1, "a" * 32]] * 4}, "ledger"),
        ({"ledger": [[10**10, "a" * 32]] * 4}, "ledger"),
        ({"ledger": [[1, "a" * 32, 0]] * 4}, "ledger"),
        ({"store": "hq"}, "store"),
        ({"store": "S/1"}, "store"),
        ({"request_id": "not-a-uuid"}, "request_id"),
        ({"at": "x" * 41}, "at"),
        ({"v": 2}, "v"),
    ],
)
def test_a_malformed_digest_is_refused_naming_the_field(over, field):
    with pytest.raises(ProtocolError) as err:
        validate_store_digest(digest(**over))
    assert err.value.field == field


def test_requests_rows_and_ledger_fixes_round_trip_and_are_bounded():
    req = DigestRequest("S001", REQ, 256, (3, 200))
    assert validate_digest_request(decode_json(encode_json(req.to_dict()))) == req
    fix = LedgerFix("S001", REQ, (ZHANG, LI))
    assert validate_ledger_fix(decode_json(encode_json(fix.to_dict()))) == fix
    rows = DigestRows(
        "S001",
        REQ,
        256,
        17,
        (3,),
        (MemberRow(ZHANG, Figures(1000, 0, -5, 5), Figures(1000, 0, -5, 5)),),
    )
    assert validate_digest_rows(decode_json(encode_json(rows.to_dict()))) == rows

    with pytest.raises(ProtocolError, match="request_id"):
        validate_digest_request({**req.to_dict(), "request_id": None})
    with pytest.raises(ProtocolError, match="outside 0..255"):
        validate_digest_request({**req.to_dict(), "wanted": [256]})
    with pytest.raises(ProtocolError, match="malformed member id"):
        validate_ledger_fix({**fix.to_dict(), "members": ["x" * 65]})
    with pytest.raises(ProtocolError, match="more than"):
        validate_ledger_fix({**fix.to_dict(), "members": [ZHANG] * (MAX_ROWS + 1)})
    raw = rows.to_dict()
    for bad in (
        [ZHANG, 1, 2, 3],  # too short
        [ZHANG, 10**10 + 1, 0, 0, 0, 0, 0, 0, 0],  # past MAX_AMOUNT
        [ZHANG, 1.5, 0, 0, 0, 0, 0, 0, 0],  # not an integer
        [ZHANG, False, 0, 0, 0, 0, 0, 0, 0],
        [7, 0, 0, 0, 0, 0, 0, 0, 0],
    ):
        with pytest.raises(ProtocolError) as err:
            validate_digest_rows({**raw, "rows": [bad]})
        assert err.value.field == "rows"
    with pytest.raises(ProtocolError, match="more than"):
        validate_digest_rows({**raw, "rows": [raw["rows"][0]] * (MAX_ROWS + 1)})
    assert len(encode_json({**raw, "rows": [raw["rows"][0]] * MAX_ROWS})) < 200_000


def row(member_id: str) -> MemberRow:
    return MemberRow(member_id, Figures(0, 0, 0, 0), Figures(0, 0, 0, 0))


def test_rows_go_in_messages_of_whole_buckets_and_big_or_partial_buckets_in_parts():
    small = {1: [row("a")], 2: [row("b"), row("c")], 5: []}
    assert list(chunk_rows(small)) == [((1, 2, 5), [row("a"), row("b"), row("c")])]
    big = {0: [row(f"m{i}") for i in range(MAX_ROWS + 1)], 1: [row("x")]}
    out = list(chunk_rows(big))
    assert [(c, len(r)) for c, r in out] == [((), MAX_ROWS), ((), 1), ((1,), 1)]
    # a bucket with members left out (unacknowledged items) is never complete
    assert list(chunk_rows(small, frozenset({2}))) == [
        ((), [row("b"), row("c")]),
        ((1, 5), [row("a")]),
    ]
    full = {b: [row(f"{b:02d}-{i}") for i in range(MAX_ROWS // 2 + 1)] for b in range(3)}
    assert [c for c, _ in chunk_rows(full)] == [(0,), (1,), (2,)]
