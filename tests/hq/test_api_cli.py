"""HQ JSON API and CLI on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from core import protocol as p
from core.errors import ConfigError, ValidationError
from core.ids import uuid7
from hq.api import create_app
from hq.changes import ChangeSet, flush_changes
from hq.cli import main
from hq.config import HqConfig
from hq.ingest import ingest_batch
from hq.members import merge_members, register_member
from hq.models import (
    AuditEntry,
    ChangeRecord,
    DeadLetter,
    Member,
    Merge,
    RulesVersion,
    add_missing_columns,
    bind,
    utcnow,
)
from tests.hq.edge_sim import Items
from tests.hq.signin import session_client

NOW = dt.datetime(2026, 11, 23, 2, 0)


@pytest.fixture
def seeded(hq_db):
    """Two stores' items ingested straight through ingest_batch (no broker needed)."""
    items = Items("S001")
    mid = uuid7()
    batch = p.make_batch(
        "S001", 1, [items.registration(mid, "13100000001", card_no="K1"), items.topup(mid, 3000)]
    )
    outcome = ingest_batch(hq_db, "hy/v1/S001/up/tx", "S001", batch, NOW)
    assert outcome.ack.acked_through == 2
    ingest_batch(hq_db, "hy/v1/S002/up/tx", "S002", b"\xff\xfe", NOW)
    return mid


@pytest.fixture
def client(hq_db, hq_db_url):
    app = create_app(HqConfig(database_url=hq_db_url), db=hq_db)
    app.testing = True
    return session_client(app, hq_db, "admin")


def test_stores_and_member_lookup(client, seeded):
    stores = client.get("/api/stores").get_json()["stores"]
    s1 = next(s for s in stores if s["code"] == "S001")
    assert (s1["acked_through"], s1["held_after_gap"], s1["online"]) == (2, 0, True)
    assert (s1["reported_seq"], s1["backlog"]) == (2, 0)
    assert s1["last_seen"].startswith("2026-11-23T02:00")
    for q in (seeded, "K1", "131-0000-0001"):
        body = client.get("/api/members", query_string={"q": q}).get_json()
        assert body["member"]["member_id"] == seeded
        assert body["member"]["stored_value"]["principal"] == 3000
        assert body["ledger"][0]["reason"] == "topup"


A_HASH = "scrypt$16384$8$1$mpOvquO9GQMJIvpFRfJs8w==$5U9Kt5ZN31nxipQk6pM6lheaECMdztfuXIcvTR2PoX0="


def test_password_hash_goes_down_to_stores_but_never_out_of_the_api(client, hq_db):
    items = Items("S001")
    with_pw, without_pw = uuid7(), uuid7()
    batch = p.make_batch(
        "S001",
        1,
        [
            items.registration(with_pw, "13100000007", password_hash=A_HASH),
            items.registration(without_pw, "13100000008", password_hash=None),
        ],
    )
    assert ingest_batch(hq_db, "hy/v1/S001/up/tx", "S001", batch, NOW).ack.acked_through == 2
    assert Member.get_by_id(with_pw).password_hash == A_HASH
    down = {
        r.key: r.data
        for r in ChangeRecord.select()
        .where(ChangeRecord.entity == "member")
        .order_by(ChangeRecord.seq)
    }
    assert down[with_pw]["password_hash"] == A_HASH
    assert down[without_pw]["password_hash"] is None
    for mid, has in ((with_pw, True), (without_pw, False)):
        body = client.get(f"/api/members/{mid}")
        assert "scrypt" not in body.get_data(as_text=True)
        assert body.get_json()["member"]["has_password"] is has
    # merged, the survivor without a password takes the other record's
    changes = ChangeSet()
    with hq_db.atomic():
        merge_members(
            hq_db,
            with_pw,
            without_pw,
            store=None,
            staff="E9",
            reason="staff",
            now=NOW,
            changes=changes,
        )
        flush_changes(hq_db, changes, NOW)
    assert Member.get_by_id(without_pw).password_hash == A_HASH


def test_dead_letters_and_exceptions(client, seeded):
    letters = client.get("/api/dead-letters").get_json()["dead_letters"]
    assert letters[0]["store"] == "S002" and letters[0]["code"] == "malformed"
    assert client.get("/api/exceptions").get_json() == {"exceptions": []}


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status"),
    [
        ("get", "/api/members", {}, 400),
        ("get", "/api/members", {"query_string": {"q": "nobody"}}, 404),
        ("get", "/api/members/00000000-0000-7000-8000-000000000000", {}, 404),
        ("get", "/api/dead-letters", {"query_string": {"limit": "-3"}}, 400),
        ("get", "/api/exceptions", {"query_string": {"limit": "lots"}}, 400),
        ("post", "/api/merges", {"data": "not json"}, 400),
        ("post", "/api/merges", {"json": {"from": "a", "to": "b", "staff": "x"}}, 400),
        ("post", "/api/merges", {"json": [1, 2]}, 400),
        ("get", "/api/nothing-here", {}, 404),
        ("delete", "/api/stores", {}, 405),
    ],
)
def test_bad_requests_get_json_4xx(client, seeded, method, url, kwargs, status):
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == status
    assert response.is_json and response.get_json()["message"]


def test_staff_merge_through_api(client, hq_db, seeded):
    other = uuid7()
    changes = ChangeSet()
    with hq_db.atomic():
        register_member(
            hq_db,
            {
                "member_id": other,
                "name": "李四",
                "phone": "13100000009",
                "registered_at": "2026-11-23T11:00:00+08:00",
            },
            "S009",
            1,
            utcnow(),
            changes,
        )
        flush_changes(hq_db, changes, utcnow())
    # a "staff" in the body is not who merges: the signed-in account is
    response = client.post("/api/merges", json={"from": other, "to": seeded, "staff": "hq-li"})
    assert response.status_code == 201
    merges = client.get("/api/merges").get_json()["merges"]
    assert merges[0]["staff"].startswith("admin-") and merges[0]["reason"] == "manual"
    entry = AuditEntry.get(AuditEntry.action == "member.merge")
    assert (entry.actor, entry.target) == (merges[0]["staff"], seeded)
    again = client.post("/api/merges", json={"from": other, "to": seeded, "staff": "hq-li"})
    assert again.status_code == 409
    assert ChangeRecord.select().where(ChangeRecord.entity == "merge").count() == 1


def test_cli_init_publish_merge_dead_letters(hq_db, hq_db_url, seeded, tmp_path, mosquitto):
    runner = CliRunner()
    base = ["--database-url", hq_db_url, *mosquitto.cli_args("hq")]
    assert runner.invoke(main, [*base, "init-db"]).exit_code == 0
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"version": 7, "points_per_yuan": {"*": 3}}))
    result = runner.invoke(main, [*base, "publish-rules", str(rules)])
    assert result.exit_code == 0, result.output
    assert RulesVersion.get_by_id(7).data["points_per_yuan"] == {"*": 3}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 8, "colour": "red"}))
    result = runner.invoke(main, [*base, "publish-rules", str(bad)])
    assert result.exit_code == 11 and "colour" in result.output

    bind(hq_db, create=False)  # the CLI bound the models to its own connection
    other = uuid7()
    with hq_db.atomic():
        register_member(
            hq_db,
            {
                "member_id": other,
                "name": "王五",
                "phone": "13100000008",
                "registered_at": "2026-11-23T11:00:00+08:00",
            },
            "S009",
            1,
            utcnow(),
            ChangeSet(),
        )
    result = runner.invoke(main, [*base, "merge", other, seeded, "--staff", "hq-wang", "--no-push"])
    assert result.exit_code == 0, result.output
    bind(hq_db, create=False)
    assert Member.get_by_id(other).merged_into == seeded
    assert Merge.get(Merge.from_member == other).staff == "hq-wang"
    result = runner.invoke(main, [*base, "merge", other, seeded, "--staff", "x", "--no-push"])
    assert result.exit_code == 13  # Conflict: already merged
    result = runner.invoke(main, [*base, "dead-letters", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)[0]["code"] == "malformed"
    assert DeadLetter.select().count() == 1


def test_cli_rejects_bad_urls():
    result = CliRunner().invoke(main, ["--database-url", "mysql://x/y", "init-db"])
    assert result.exit_code == 17
    result = CliRunner().invoke(main, ["--mqtt-url", "http://x", "dead-letters"])
    assert result.exit_code == 17


def test_card_block_goes_to_the_change_log(client, seeded):
    response = client.post("/api/cards/K1/block", json={"reason": "挂失"})
    assert response.status_code == 200
    rows = list(ChangeRecord.select().order_by(ChangeRecord.seq.desc()).limit(2))
    assert {r.entity for r in rows} == {"card", "card_block"}
    block = next(r for r in rows if r.entity == "card_block")
    assert block.data == {"card_no": "K1", "blocked": True, "reason": "挂失"}
    assert client.post("/api/cards/NOPE/block").status_code == 404
    assert client.post("/api/cards/K1/block", json={"blocked": "yes"}).status_code == 400


def test_merge_nets_one_records_debt_against_the_others_balance(hq_db):
    """Straight through ingest_batch: a member in points debt merged with one holding lots."""
    from hq.ledger import ledger_sums
    from hq.models import HqException, PointsLot

    items = Items("S005")
    early, late = uuid7(), uuid7()
    batch = [
        items.registration(early, "13100000005", at="2026-11-23T08:00:00+08:00"),
        # paid in full with 40 points (so it earns none): 40 points of debt
        items.sale(early, 40, points_used=40, offline=True),
    ]
    ingest_batch(hq_db, "hy/v1/S005/up/tx", "S005", p.make_batch("S005", 1, batch), NOW)
    assert Member.get_by_id(early).points == -40
    batch = [
        items.registration(late, "13100000006", at="2026-11-23T09:00:00+08:00"),
        items.sale(late, 10000, points_earned=100),
    ]
    ingest_batch(hq_db, "hy/v1/S005/up/tx", "S005", p.make_batch("S005", 1, batch), NOW)
    with hq_db.atomic():
        changes = ChangeSet()
        from hq.members import merge_members

        merge_members(
            hq_db, late, early, store=None, staff="hq", reason="manual", now=NOW, changes=changes
        )
        flush_changes(hq_db, changes, NOW)
    survivor = Member.get_by_id(early)
    assert survivor.points == 60
    assert ledger_sums(early)["points"] == 60
    lots = sum(x.remaining for x in PointsLot.select().where(PointsLot.member_id == early))
    assert lots == 60
    debt = HqException.get((HqException.member_id == early) & (HqException.kind == "overdraft"))
    assert (debt.recovered, debt.status) == (40, "closed")


def test_new_epoch_restarts_the_sequence_and_old_epochs_keep_their_cursor(hq_db):
    from hq.models import Store

    items = Items("S006")
    mid = uuid7()
    first = [items.registration(mid, "13100000007"), items.topup(mid, 100)]
    topic = "hy/v1/S006/up/tx"
    assert (
        ingest_batch(hq_db, topic, "S006", p.make_batch("S006", 1, first), NOW).ack.acked_through
        == 2
    )
    # the box is rebuilt: epoch 2 starts again at seq 1
    items.seq = 0
    fresh = items.topup(mid, 50)
    out = ingest_batch(hq_db, topic, "S006", p.make_batch("S006", 2, [fresh]), NOW)
    assert (out.ack.epoch, out.ack.acked_through, out.ack.rejected) == (2, 1, ())
    # an old item resent under the new epoch is recognised by its id: a duplicate
    stale_copy = {**first[1], "seq": 2}
    out = ingest_batch(hq_db, topic, "S006", p.make_batch("S006", 2, [stale_copy]), NOW)
    assert (out.ack.acked_through, out.ack.rejected, out.duplicates) == (2, (), 1)
    # and a batch of the old epoch is answered from that epoch's own cursor
    out = ingest_batch(hq_db, topic, "S006", p.make_batch("S006", 1, first), NOW)
    assert (out.ack.epoch, out.ack.acked_through, out.duplicates) == (1, 2, 2)
    assert Member.get_by_id(mid).sv_principal == 150
    assert Store.get_by_id("S006").epoch == 2


def test_init_db_after_an_upgrade_adds_the_new_nullable_columns(hq_db):
    hq_db.execute_sql('ALTER TABLE "member" DROP COLUMN "password_hash"')
    assert "password_hash" not in {c.name for c in hq_db.get_columns("member")}
    assert add_missing_columns(hq_db) == ["member.password_hash"]
    assert "password_hash" in {c.name for c in hq_db.get_columns("member")}
    assert add_missing_columns(hq_db) == []  # safe to run again


def test_init_db_refuses_a_missing_not_null_column_without_a_constant_default(hq_db):
    hq_db.execute_sql('ALTER TABLE "member" DROP COLUMN "updated_at"')
    with pytest.raises(ConfigError, match="member lacks column updated_at"):
        add_missing_columns(hq_db)


def test_init_db_adds_a_missing_not_null_column_with_its_default_in_old_rows(hq_db):
    Member.create(id="m-old", name="张三", created_at=NOW, updated_at=NOW)
    hq_db.execute_sql('ALTER TABLE "member" DROP COLUMN "points"')
    assert add_missing_columns(hq_db) == ["member.points"]
    assert Member.get_by_id("m-old").points == 0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("member_day_points_multiplier", "2"),
        ("member_day_weekdays", [9]),
        ("version", "3"),
        ("topup_bonuses", [[50000]]),
    ],
)
def test_publish_rules_refuses_a_wrong_type_by_field_whoever_publishes(hq_db, key, value):
    from core.rules import DEMO_RULES
    from hq.rules import publish_rules

    document = {**DEMO_RULES.to_dict(), "version": 7, key: value}
    before = RulesVersion.select().count()
    with pytest.raises(ValidationError) as refused:
        publish_rules(hq_db, document)
    assert refused.value.field.startswith(key)
    assert RulesVersion.select().count() == before
