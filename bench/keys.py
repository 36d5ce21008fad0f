"""Phones and keys benchmark (invariant 8): what the chain lookup hash costs HQ per member
sent down, and how fast ``rotate-member-key`` encrypts a store's held phones again, each
against a raw baseline measured in the same run.

    python bench/keys.py [--phones 20000] [--batch 100] [--members 200000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.key_rotation import rotate_member_key  # noqa: E402
from edge.models import Member, open_database  # noqa: E402
from edge.security import MemberKeys, create_key_file  # noqa: E402
from hq.lookup import ChainLookup  # noqa: E402

MEMBER = {
    "member_id": "01a20000-0000-7000-8000-000000000001",
    "name": "张三",
    "phone": "13800000001",
    "gender": "M",
    "birthday": None,
    "card_type": "普通卡",
    "tier": "",
    "status": "active",
    "stored_value": {"principal": 0, "bonus": 0},
    "points_lots": [],
    "through": {},
}


def projection(members: int) -> None:
    lookup = ChainLookup.of_key(os.urandom(32))
    started = time.perf_counter()
    for _ in range(members):
        dict(MEMBER)  # baseline: the copy every record going down already costs
    raw = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(members):
        lookup.member_for_store(MEMBER)
    hashed = time.perf_counter() - started
    print(
        f"member_for_store: {hashed / members * 1e6:.2f} us per member "
        f"(a dict copy: {raw / members * 1e6:.2f} us; x{hashed / raw:.1f}); "
        f"{hashed:.2f} s per {members:,} members of a snapshot"
    )


def rotation(phones: int, batch: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="hy-bench-keys-"))
    key_path = workdir / "member.key"
    create_key_file(key_path)
    keys = MemberKeys.load(key_path)
    db = open_database(workdir / "edge.sqlite3")
    rows = []
    for i in range(phones):
        member_id, phone = f"m{i:08d}", f"138{i:08d}"
        rows.append(
            {
                "id": member_id,
                "name": "x",
                "name_pinyin": "x",
                "name_initials": "x",
                "phone_hash": f"h{i}",
                "phone_enc": keys.encrypt(phone, member_id),
                "phone_tail": phone[-4:],
                "registered_at": "2026-12-04T10:00:00+08:00",
                "registered_store": "B001",
                "updated_at": "2026-12-04T10:00:00+08:00",
            }
        )
    with db.atomic():
        for i in range(0, phones, 500):
            Member.insert_many(rows[i : i + 500]).execute()
    # baseline: the same decrypt + encrypt of every blob, with no database
    new = MemberKeys.from_master(os.urandom(32))
    started = time.perf_counter()
    for row in rows:
        new.encrypt(keys.decrypt(row["phone_enc"], row["id"]), row["id"])
    raw = time.perf_counter() - started
    started = time.perf_counter()
    report = rotate_member_key(db, keys, key_path, batch=batch)
    took = time.perf_counter() - started
    db.close()
    print(
        f"rotate-member-key: {report.rows:,} blobs in {report.batches} transactions of {batch}: "
        f"{took:.2f} s, {report.rows / took:,.0f} blobs/s "
        f"(crypto alone: {raw:.2f} s; x{took / raw:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phones", type=int, default=20000, help="held phones to rotate")
    parser.add_argument("--batch", type=int, default=100, help="rows per rotation transaction")
    parser.add_argument("--members", type=int, default=200000, help="members projected")
    args = parser.parse_args()
    projection(args.members)
    rotation(args.phones, args.batch)


if __name__ == "__main__":
    main()
