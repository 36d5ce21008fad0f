"""HQ publishes offline policies for the chain and per store (CLI, API, change log,
snapshots), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from core.errors import NotFound, ValidationError
from hq.api import create_app
from hq.changes import snapshot_records
from hq.cli import main
from hq.config import HqConfig
from hq.models import ChangeRecord, bind
from hq.offline import list_policies, policies_in_force, remove_store_policy, set_policy
from tests.hq.signin import session_client
from tests.lookup_keys import TEST_LOOKUP

NOW = dt.datetime(2026, 11, 23, 2, 0)


def _records(key: str) -> list[ChangeRecord]:
    return list(
        ChangeRecord.select()
        .where((ChangeRecord.entity == "offline_policy") & (ChangeRecord.key == key))
        .order_by(ChangeRecord.seq)
    )


def test_chain_policy_and_store_override_are_recorded_and_logged(hq_db):
    sv = {"kind": "stored_value", "mode": "floor_limit", "daily_limit": 20000}
    state, changes = set_policy(hq_db, sv, by="hq-li", now=NOW)
    assert state == {
        **sv,
        "store": None,
        "version": 1,
        "published_at": "2026-11-23T02:00:00Z",
        "published_by": "hq-li",
    }
    assert [(c.entity, c.key, c.op, c.data) for c in changes] == [
        ("offline_policy", "stored_value", "upsert", state)
    ]
    assert _records("stored_value")[-1].data == state

    later = NOW + dt.timedelta(hours=1)
    state, _ = set_policy(hq_db, {**sv, "daily_limit": 10000}, now=later)
    assert (state["version"], state["daily_limit"], state["published_by"]) == (2, 10000, None)

    override, changes = set_policy(
        hq_db, {"kind": "stored_value", "mode": "online_only"}, store="S002", now=later
    )
    assert changes[0].key == "stored_value@S002" and override["store"] == "S002"
    assert [p["store"] for p in list_policies()] == [None, "S002"]
    assert list_policies("S001") == [state]
    assert policies_in_force("S002") == {
        "stored_value": override,
        "points": None,
        "coupons": None,
    }
    assert policies_in_force("S001")["stored_value"] == state


def test_removing_an_override_goes_down_as_a_delete_and_in_snapshots(hq_db):
    chain, _ = set_policy(hq_db, {"kind": "points", "mode": "floor_limit", "daily_limit": 300})
    set_policy(hq_db, {"kind": "points", "mode": "online_only"}, store="S002")
    removed, changes = remove_store_policy(hq_db, "points", "S002", by="hq-li")
    assert [(c.key, c.op) for c in changes] == [("points@S002", "delete")]
    assert removed["version"] == 2 and removed["published_by"] == "hq-li"
    assert policies_in_force("S002")["points"] == chain
    with pytest.raises(NotFound) as info:
        remove_store_policy(hq_db, "points", "S002")
    assert info.value.field == "store"
    with pytest.raises(ValidationError) as info:
        remove_store_policy(hq_db, "points", None)  # the chain's is replaced, not removed
    assert info.value.field == "store"

    with hq_db.atomic():
        _, records = snapshot_records(hq_db, TEST_LOOKUP)
        policies = [(r["key"], r["op"]) for r in records if r["entity"] == "offline_policy"]
    assert policies == [("points", "upsert"), ("points@S002", "delete")]

    again, _ = set_policy(hq_db, {"kind": "points", "mode": "online_only"}, store="S002")
    assert again["version"] == 3 and policies_in_force("S002")["points"] == again


@pytest.mark.parametrize(
    ("raw", "store", "by", "field"),
    [
        ({"kind": "cash", "mode": "online_only"}, None, None, "kind"),
        ({"kind": "points", "mode": "sometimes"}, None, None, "mode"),
        ({"kind": "points", "mode": "floor_limit"}, None, None, "daily_limit"),
        ({"kind": "points", "mode": "floor_limit", "daily_limit": -1}, None, None, "daily_limit"),
        ({"kind": "points", "mode": "floor_limit", "daily_limit": "9"}, None, None, "daily_limit"),
        ({"kind": "points", "mode": "online_only", "daily_limit": 5}, None, None, "daily_limit"),
        (
            {"kind": "points", "mode": "floor_limit", "daily_limit": 10**10 + 1},
            None,
            None,
            "daily_limit",
        ),
        ({"kind": "points", "mode": "online_only"}, "S 1", None, "store"),
        ({"kind": "points", "mode": "online_only"}, None, "x" * 65, "staff"),
        ({"kind": "points", "mode": "online_only"}, None, "a\x00b", "staff"),
    ],
)
def test_bad_policies_are_refused_naming_the_field(hq_db, raw, store, by, field):
    with pytest.raises(ValidationError) as info:
        set_policy(hq_db, raw, store, by)
    assert info.value.field == field
    assert ChangeRecord.select().where(ChangeRecord.entity == "offline_policy").count() == 0


def test_cli_set_show_remove(hq_db, hq_db_url):
    runner = CliRunner()
    base = ["--database-url", hq_db_url, "offline-policy"]
    sv = ["--kind", "stored_value", "--no-push"]
    result = runner.invoke(
        main, [*base, "set", *sv, "--mode", "floor_limit", "--daily-limit", "20000"]
    )
    assert result.exit_code == 0, result.output
    assert "stored_value for the chain: floor_limit 20000 per member per day" in result.output
    result = runner.invoke(
        main, [*base, "set", *sv, "--mode", "online_only", "--store", "S002", "--staff", "hq-li"]
    )
    assert result.exit_code == 0, result.output
    assert "for store S002: online_only (version 1)" in result.output

    result = runner.invoke(main, [*base, "show", "--store", "S002"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("stored_value  online_only  store  version 1 at ")
    assert lines[0].endswith(" by hq-li")
    assert lines[1] == "points  the store's own [offline] config  (none)"
    result = runner.invoke(main, [*base, "show", "--json"])
    assert [(p["store"], p["mode"]) for p in json.loads(result.output)] == [
        (None, "floor_limit"),
        ("S002", "online_only"),
    ]

    result = runner.invoke(main, [*base, "remove", *sv, "--store", "S002"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, [*base, "show", "--store", "S002", "--json"])
    assert json.loads(result.output)["stored_value"]["store"] is None

    result = runner.invoke(main, [*base, "set", *sv, "--mode", "floor_limit"])
    assert result.exit_code == ValidationError.code
    assert "daily_limit" in result.output
    result = runner.invoke(main, [*base, "remove", *sv, "--store", "S002"])
    assert result.exit_code == NotFound.code
    bind(hq_db, create=False)  # the CLI bound the models to its own connection


@pytest.fixture
def client(hq_db, hq_db_url, mosquitto):
    config = HqConfig(database_url=hq_db_url, mqtt=mosquitto.hq_settings("hq-api"))
    app = create_app(config, db=hq_db)
    app.testing = True
    return session_client(app, hq_db, "admin")


def test_api_sets_lists_and_removes(client):
    res = client.put(
        "/api/offline-policies/points",
        json={"mode": "floor_limit", "daily_limit": 300, "staff": "hq-li"},
    )
    assert res.status_code == 200, res.json
    assert res.json["policy"]["daily_limit"] == 300 and res.json["changes"] == 1
    assert res.json["pushed"] is True
    res = client.put("/api/offline-policies/points", json={"mode": "online_only", "store": "S3"})
    assert res.status_code == 200 and res.json["policy"]["store"] == "S3"

    res = client.get("/api/offline-policies?store=S3")
    assert [p["store"] for p in res.json["policies"]] == [None, "S3"]
    assert res.json["in_force"]["points"]["mode"] == "online_only"
    assert res.json["in_force"]["stored_value"] is None

    res = client.delete("/api/offline-policies/points?store=S3&staff=hq-li")
    assert res.status_code == 200 and res.json["removed"]["published_by"] == "hq-li"
    res = client.get("/api/offline-policies?store=S3")
    assert res.json["in_force"]["points"]["store"] is None


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "field"),
    [
        ("put", "/api/offline-policies/cash", {"mode": "online_only"}, 400, "kind"),
        ("put", "/api/offline-policies/points", {"mode": ["x"]}, 400, "mode"),
        ("put", "/api/offline-policies/points", {"mode": "floor_limit"}, 400, "daily_limit"),
        (
            "put",
            "/api/offline-policies/points",
            {"mode": "online_only", "store": "\ud800"},
            400,
            "store",
        ),
        ("put", "/api/offline-policies/points", [1], 400, None),
        ("delete", "/api/offline-policies/points", None, 400, "store"),
        ("delete", "/api/offline-policies/points?store=S9", None, 404, "store"),
        ("delete", "/api/offline-policies/points?store=%00", None, 400, "store"),
        ("get", "/api/offline-policies?store=a%20b", None, 400, "store"),
    ],
)
def test_api_bad_input_is_a_4xx_naming_the_field(client, method, url, body, status, field):
    # json.dumps escapes a lone surrogate as \\ud800, as a client on the wire would
    res = getattr(client, method)(url, data=json.dumps(body), content_type="application/json")
    assert res.status_code == status, res.json
    assert res.json.get("field") == field
