"""One batch in one transaction: what its items share (members, lots, rows written
together) gives the same chain state as applying the items one batch each."""

from __future__ import annotations

import datetime as dt
import json

from core import protocol as p
from core.ids import uuid7
from hq.changes import member_state
from hq.ingest import IngestOutcome, ingest_batch
from hq.ledger import ledger_sums
from hq.models import (
    Card,
    ChangeRecord,
    LedgerEntry,
    Member,
    PhoneKey,
    PointsLot,
    ProcessedItem,
    Sale,
    TopUp,
)
from tests.hq.edge_sim import Items

NOW = dt.datetime(2026, 11, 24, 2, 0)


def ingest(db, store: str, items: list[dict]) -> IngestOutcome:
    payload = p.make_batch(store, 1, items)
    outcome = ingest_batch(db, p.up_topic(store, "tx"), store, payload, NOW)
    assert outcome.ack is not None
    return outcome


def spend_lot(item: dict, lot_id: str) -> dict:
    """A sale paid partly with points, naming the lot they come from."""
    item["body"]["points_lots_used"] = [[lot_id, item["body"]["points_used"]]]
    return item


def busy_day(store: str) -> tuple[list[dict], str, str]:
    """Registrations (two with one phone), earnings, a spend of a lot earned minutes
    before, top-ups and a stored-value spend, a sale to the merged id."""
    items = Items(store)
    first, second, other = uuid7(), uuid7(), uuid7()
    plan = [
        items.registration(first, "13900000001", card_no=f"C{first[-8:]}"),
        items.registration(other, "13900000002"),
        items.topup(first, 50000),  # the rules give 10,000 bonus
        items.sale(first, 3000, points_earned=30),
        items.sale(other, 1000, points_earned=10),
    ]
    earned = plan[-2]["body"]["points_lot"]["lot_id"]
    plan += [
        spend_lot(items.sale(first, 500, points_used=20), earned),
        items.sale(first, 1200, stored_value=(1000, 100), points_earned=12),
        items.sale(None, 800),
        # the same phone registered again (later): merged into ``first`` in this batch
        items.registration(second, "13900000001"),
        items.sale(second, 700, points_earned=7),
        items.topup(second, 5000),
        items.sale(other, 2000, points_used=5),
    ]
    return plan, first, other


def chain_state(store: str) -> dict:
    members = {}
    for m in Member.select().order_by(Member.registered_at):
        state = member_state(m)
        members[(m.phone, m.status)] = (
            state["stored_value"],
            state["points"],
            sorted((lot["earned_on"], lot["remaining"]) for lot in state["points_lots"]),
            sorted(state["through"].values()),
        )
    return {
        "members": members,
        "sales": Sale.select().where(Sale.store == store).count(),
        "topups": TopUp.select().where(TopUp.store == store).count(),
        "processed": ProcessedItem.select().where(ProcessedItem.store == store).count(),
        "ledger": sorted(
            (e.balance, e.principal, e.bonus, e.points, e.reason, e.seq)
            for e in LedgerEntry.select().where(LedgerEntry.store == store)
        ),
    }


def test_one_batch_equals_one_item_per_batch(hq_db):
    together, separately = f"T{uuid7()[-6:]}", f"S{uuid7()[-6:]}"
    plan, _, _ = busy_day(together)
    outcome = ingest(hq_db, together, plan)
    assert outcome.ack.acked_through == len(plan) and outcome.ack.rejected == ()
    state_together = chain_state(together)
    for model in (Member, PhoneKey, Card):  # the second store registers the same phones
        model.delete().execute()
    plan, _, _ = busy_day(separately)
    for item in plan:
        assert ingest(hq_db, separately, [item]).ack.rejected == ()
    assert chain_state(separately) == state_together


def test_batch_balances_lots_and_change_records(hq_db):
    store = f"B{uuid7()[-6:]}"
    plan, first, other = busy_day(store)
    before = ChangeRecord.select().count()
    outcome = ingest(hq_db, store, plan)
    survivor = Member.get_by_id(first)
    loser = Member.get(Member.merged_into == first)
    assert survivor.status == "active" and loser.status == "merged"
    for m in Member.select():
        sums = ledger_sums(m.id)
        assert (m.sv_principal, m.sv_bonus, m.points) == (
            sums["principal"],
            sums["bonus"],
            sums["points"],
        )
        lots = sum(lot.remaining for lot in PointsLot.select().where(PointsLot.member_id == m.id))
        assert lots == max(m.points, 0)
    assert (survivor.sv_principal, survivor.sv_bonus) == (50000 - 1000 + 5000, 10000 - 100)
    # the lot earned at seq 4 paid the spend at seq 6
    lot = PointsLot.get_by_id(plan[3]["body"]["points_lot"]["lot_id"])
    assert (lot.earned, lot.remaining) == (30, 10)
    assert survivor.through == {store: len(plan) - 1}  # the last sale is the other's
    # one member record per member for the whole batch, with its state at commit
    records = list(ChangeRecord.select().where(ChangeRecord.seq > before))
    assert [c.seq for c in outcome.changes] == [r.seq for r in records]
    members = [r for r in records if r.entity == "member"]
    assert sorted(r.key for r in members) == sorted([first, other, loser.id])
    for record in members:
        assert record.data == json.loads(json.dumps(member_state(Member.get_by_id(record.key))))
    assert [r.entity for r in records].count("merge") == 1


def test_resent_batch_lists_its_rejections_again(hq_db):
    store = f"R{uuid7()[-6:]}"
    items = Items(store)
    mid = uuid7()
    plan = [items.registration(mid, "13900000009"), items.topup(mid, 1000)]
    plan.append(items.topup(mid, 2000))
    plan[-1]["body"]["topup_id"] = plan[-2]["body"]["topup_id"]  # the same top-up twice
    plan.append(items.topup(mid, 3000))
    first = ingest(hq_db, store, plan)
    assert first.ack.acked_through == 4
    assert [r.seq for r in first.ack.rejected] == [3]
    again = ingest(hq_db, store, plan)
    assert again.duplicates == 4 and again.applied == 0
    assert again.ack.rejected == first.ack.rejected
    assert Member.get_by_id(mid).sv_principal == 4000
