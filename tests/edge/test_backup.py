"""The store box's backup and the restored box moving past HQ's cursor (edge/backup.py).

End to end, with a real HQ and broker: tests/sync/test_restore_drill.py."""

from __future__ import annotations

import json
import sqlite3

from click.testing import CliRunner

from edge.backup import backup_database, move_past_hq_cursor
from edge.cli import main
from edge.models import Counter, Outbox
from edge.services.outbox import next_number


def outbox(db) -> list[tuple[int, int, bool]]:  # noqa: ANN001
    rows = Outbox.select().order_by(Outbox.seq)
    return [(r.seq, json.loads(r.payload)["seq"], r.acked) for r in rows]


def test_the_backup_holds_every_committed_item_and_the_till_writes_on(demo_till, tmp_path):
    db = demo_till.db
    before = Outbox.select().count()
    assert before > 0
    out = tmp_path / "backup.sqlite3"
    size = backup_database(db, out)
    assert size == out.stat().st_size > 0
    assert not (tmp_path / "backup.sqlite3.partial").exists()
    with sqlite3.connect(out) as copy:
        assert copy.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == before
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with db.atomic() as txn:  # the live database is untouched and still writable
        assert next_number("outbox") == before + 1
        txn.rollback()


def test_items_after_the_last_ack_move_past_hqs_cursor_in_order(demo_till):
    db = demo_till.db
    top = Outbox.select().count()  # the demo's registrations: seqs 1..top
    assert top >= 2
    Outbox.update(acked=True).where(Outbox.seq == 1).execute()
    ids = [r.id for r in Outbox.select().where(Outbox.seq > 1).order_by(Outbox.seq)]
    assert move_past_hq_cursor(db, 1, top + 10) == top + 9
    moved = outbox(db)
    assert moved[0] == (1, 1, True)
    assert moved[1:] == [(s, s, False) for s in range(top + 11, 2 * top + 10)]
    assert [r.id for r in Outbox.select().where(Outbox.seq > 1).order_by(Outbox.seq)] == ids
    with db.atomic():
        assert next_number("outbox") == 2 * top + 10  # the till's next sale follows them


def test_an_ack_not_past_the_last_seq_moves_nothing(demo_till):
    db = demo_till.db
    top = Outbox.select().count()
    before = outbox(db)
    assert move_past_hq_cursor(db, 0, top) == 0
    assert outbox(db) == before


def test_an_empty_box_starts_after_hqs_cursor(till):
    assert Outbox.select().count() == 0
    assert move_past_hq_cursor(till.db, 0, 40) == 40
    assert Counter.get_by_id("outbox").value == 40
    with till.db.atomic():
        assert next_number("outbox") == 41


def test_backup_command_says_where_and_refuses_a_bad_path_in_chinese(tmp_path):
    config = tmp_path / "edge.toml"
    config.write_text(f'data_dir = "{tmp_path / "edge"}"\n', encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(main, ["-c", str(config), "init"]).exit_code == 0
    out = tmp_path / "b.sqlite3"
    done = runner.invoke(main, ["-c", str(config), "backup", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "已备份到" in done.output and out.exists()
    bad = runner.invoke(main, ["-c", str(config), "backup", "--out", str(tmp_path / "no" / "b")])
    assert bad.exit_code == 1
    assert "备份失败" in bad.stderr
