"""The audit log (hq/audit.py): a row per sensitive action, in the action's transaction,
a reason where one is needed, searchable by action, member and who."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from core.errors import ValidationError
from hq import audit
from hq.cli import main
from hq.models import AuditEntry


@pytest.mark.parametrize(
    ("reason", "problem"),
    [
        (None, "needs a reason"),
        ("", "needs a reason"),
        ("   ", "needs a reason"),
        ("x" * 501, "longer"),
    ],
)
def test_an_action_that_needs_a_reason_is_refused_without_one(reason, problem):
    with pytest.raises(ValidationError, match=problem) as err:
        audit.require_reason(reason, "积分调整")
    assert err.value.field == "reason"


def test_a_row_commits_with_its_action_or_not_at_all(hq_db):
    audit.record(hq_db, "alice", "points.adjust", "m-1", "补录积分", delta=50)
    with pytest.raises(RuntimeError), hq_db.atomic():
        audit.record(hq_db, "bob", "tier.set", "m-2", "店长申请")
        raise RuntimeError("the action failed after its audit row")
    assert [(r.actor, r.action) for r in AuditEntry.select()] == [("alice", "points.adjust")]
    with pytest.raises(ValidationError, match="操作人"):
        audit.record(hq_db, " ", "tier.set", "m-2", "x")


def test_entries_are_newest_first_and_filtered(hq_db):
    audit.record(hq_db, "alice", "points.adjust", "m-1", "a", delta=50)
    audit.record(
        hq_db, audit.till_actor("S001", "1001"), "card.block", "C0001", "挂失", store="S001"
    )
    audit.record(hq_db, "alice", "tier.set", "m-1", "b")
    assert [e["action"] for e in audit.entries(hq_db)] == [
        "tier.set",
        "card.block",
        "points.adjust",
    ]
    assert [e["action"] for e in audit.entries(hq_db, target="m-1")] == [
        "tier.set",
        "points.adjust",
    ]
    (block,) = audit.entries(hq_db, actor="store:S001/staff:1001")
    assert (block["store"], block["reason"]) == ("S001", "挂失")
    assert audit.entries(hq_db, action="points.adjust")[0]["details"] == {"delta": 50}


def test_the_audit_command_lists_them(hq_db, hq_db_url):
    audit.record(hq_db, "alice", "points.adjust", "m-1", "补录积分", delta=50)
    runner = CliRunner()
    result = runner.invoke(main, ["--database-url", hq_db_url, "audit", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert (row["actor"], row["target"], row["reason"]) == ("alice", "m-1", "补录积分")
    text = runner.invoke(main, ["--database-url", hq_db_url, "audit", "--target", "m-9"])
    assert text.exit_code == 0 and "(none)" in text.output
