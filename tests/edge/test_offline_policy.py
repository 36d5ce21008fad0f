"""The till enforces the offline policy it holds: HQ's (this store's override, else the
chain's) over its own [offline] file, which is only the fallback before HQ publishes.

No network here: HQ's records arrive as change pages (edge/sync/apply.py)."""

from __future__ import annotations

import pytest

from core.errors import Forbidden, InsufficientFunds
from core.protocol import Change, ChangePage
from edge.api import create_app
from edge.demo_data import load_demo
from edge.services import sales
from edge.services.context import open_till
from edge.services.offline import policies_in_force, policy_in_force
from edge.services.staff import sign_in
from edge.sync.apply import apply_page, ensure_sync_tables, load_snapshot
from tests.edge.conftest import make_config
from tests.edge.conftest import sign_in as sign_in_client

NOW = "2026-11-23T10:00:00+08:00"
STORE = "S1"


@pytest.fixture
def till(tmp_path, clock):
    # the store's own file: stored value floor_limit 20000, points floor_limit 5000
    t = open_till(make_config(tmp_path, store={"code": STORE}), clock=clock, create_key=True)
    ensure_sync_tables(t.db)
    load_demo(t, members=2)
    yield t
    t.db.close()


class Hq:
    """HQ's offline_policy change records, as hq/offline.py writes them."""

    def __init__(self) -> None:
        self.seq = 0
        self.versions: dict[str, int] = {}

    def record(self, kind: str, mode: str = "", limit: int = 0, store: str | None = None):
        key = kind if store is None else f"{kind}@{store}"
        self.seq += 1
        self.versions[key] = self.versions.get(key, 0) + 1
        data = {
            "kind": kind,
            "mode": mode,
            "daily_limit": limit,
            "store": store,
            "version": self.versions[key],
            "published_at": f"2026-11-23T02:00:{self.seq:02d}Z",
            "published_by": "hq-li",
        }
        return Change(self.seq, "offline_policy", key, "delete" if not mode else "upsert", data)


@pytest.fixture
def hq():
    return Hq()


def send(till, *changes: Change) -> None:
    first, last = changes[0].seq, changes[-1].seq
    page = ChangePage(first, last, changes, False, last)
    assert apply_page(till.db, till.store, till.keys, page, NOW)[0] == len(changes)


def in_force(till, kind: str) -> tuple[str, int, str, str | None]:
    p = policy_in_force(till.config, kind)
    return p.policy.mode, p.policy.daily_limit, p.source, p.scope


def test_before_any_publish_the_stores_own_file_decides(till):
    assert in_force(till, "stored_value") == ("floor_limit", 20000, "local config", None)
    assert in_force(till, "coupons") == ("online_only", 0, "local config", None)


def test_the_chains_policy_replaces_the_file_and_a_store_override_wins(till, hq):
    send(till, hq.record("stored_value", "online_only"))
    assert in_force(till, "stored_value") == ("online_only", 0, "hq", "chain")
    assert in_force(till, "points") == ("floor_limit", 5000, "local config", None)  # per kind

    send(till, hq.record("stored_value", "floor_limit", 3000, store=STORE))
    assert in_force(till, "stored_value") == ("floor_limit", 3000, "hq", "store")
    send(till, hq.record("stored_value", "floor_limit", 100))  # the chain's changes: still ours
    assert in_force(till, "stored_value") == ("floor_limit", 3000, "hq", "store")

    send(till, hq.record("stored_value", store=STORE))  # override removed
    assert in_force(till, "stored_value") == ("floor_limit", 100, "hq", "chain")


def test_other_stores_overrides_are_not_ours(till, hq):
    send(
        till,
        hq.record("points", "online_only", store="S2"),
        hq.record("points", "floor_limit", 300),
        hq.record("stored_value", "floor_limit", 1, store="S10"),
        hq.record("stored_value", store="S2"),
    )
    assert in_force(till, "points") == ("floor_limit", 300, "hq", "chain")
    assert in_force(till, "stored_value") == ("floor_limit", 20000, "local config", None)


def test_an_unreadable_hq_record_means_online_only(till, hq):
    bad = hq.record("points", "floor_limit", 300)
    send(till, Change(bad.seq, bad.entity, bad.key, bad.op, {**bad.data, "daily_limit": "lots"}))
    assert in_force(till, "points") == ("online_only", 0, "hq", "chain")


def spend(till, stored_value: int = 0, points: int = 0) -> dict:
    _, staff = sign_in(till, "1001", "1234")
    tenders = [{"kind": "cash", "amount": 200000}]
    if stored_value:
        tenders.append({"kind": "stored_value", "amount": stored_value})
    if points:
        tenders.append({"kind": "points", "amount": points})
    req = {
        "member": {"card_no": "C0001"},
        "lines": [{"sku": "P0003", "qty": 20}],
        "tenders": tenders,
        "member_password": "123456",
    }
    return sales.checkout(till, staff, sales.CheckoutRequest.from_request(req))


def test_checkout_offline_follows_hqs_policy_not_the_file(till, hq):
    _, staff = sign_in(till, "1001", "1234")
    sales.top_up(till, staff, {"card_no": "C0001"}, 50000)
    assert spend(till, stored_value=1000)["offline"] is True  # the file: floor_limit 20000

    send(till, hq.record("stored_value", "online_only"))
    with pytest.raises(Forbidden, match="在线授权"):
        spend(till, stored_value=1000)

    send(till, hq.record("stored_value", "floor_limit", 1500, store=STORE))
    spend(till, stored_value=500)  # 1000 + 500 of today's 1500 at this store
    with pytest.raises(InsufficientFunds, match="每日限额 ¥15.00") as info:
        spend(till, stored_value=1)
    assert info.value.details["limit"] == 1500 and info.value.details["used"] == 1500

    send(till, hq.record("stored_value", store=STORE))  # back to the chain's online_only
    with pytest.raises(Forbidden):
        spend(till, stored_value=1)


def test_status_says_which_policy_is_in_force_and_where_it_came_from(till, hq):
    client = create_app(till).test_client()
    cashier = sign_in_client(client)
    res = client.get("/api/v1/status", headers=cashier)
    assert res.status_code == 200
    assert res.json["offline_policies"]["points"] == {
        "mode": "floor_limit",
        "daily_limit": 5000,
        "source": "local config",
    }
    send(till, hq.record("points", "online_only"), hq.record("coupons", "floor_limit", 2, STORE))
    policies = client.get("/api/v1/status", headers=cashier).json["offline_policies"]
    assert policies == policies_in_force(till.config)
    assert policies["points"] == {
        "mode": "online_only",
        "daily_limit": 0,
        "source": "hq",
        "scope": "chain",
        "version": 1,
        "published_at": "2026-11-23T02:00:01Z",
    }
    assert policies["coupons"]["scope"] == "store" and policies["coupons"]["daily_limit"] == 2
    assert policies["stored_value"]["source"] == "local config"


def test_a_snapshot_brings_hqs_policies_and_drops_a_removed_override(till, hq):
    send(till, hq.record("points", "online_only", store=STORE))
    assert in_force(till, "points")[3] == "store"
    records = [
        hq.record("points", "floor_limit", 300),
        hq.record("points", store=STORE),  # removed at HQ while this store was away
        hq.record("stored_value", "online_only", store="S2"),
    ]
    cursor = records[-1].seq
    load_snapshot(till.db, STORE, till.keys, [c.to_dict() for c in records], cursor, NOW)
    assert in_force(till, "points") == ("floor_limit", 300, "hq", "chain")
    assert in_force(till, "stored_value") == ("floor_limit", 20000, "local config", None)
