"""A top-up racing a merge from HQ lands on the survivor.

The till finds the member at the swipe, then takes the write lock; the sync agent (another
process) may apply HQ's merge in between. Written to the merged-away row, the top-up
would stay there for good: the loser's hand-over has already run, HQ credits the survivor,
and the store would show the money twice (found by tests/model, once in about 50 runs)."""

from __future__ import annotations

from edge.models import Ledger, Member
from edge.services import sales
from edge.sync.apply import Applier
from tests.edge.conftest import sign_in


def _merge_at_hq(till, loser: str, survivor: str) -> None:
    """What the sync agent does with HQ's merge record, in its own transaction."""
    applier = Applier(till.config.store.code, till.keys, till.now().isoformat())
    with till.db.atomic():
        applier.apply_merge({"from_member_id": loser, "to_member_id": survivor}, 1)
        applier.recompute(loser, "chg:1")


def _stored_value(member_id: str) -> tuple[int, int]:
    """(cached principal + bonus, the store's ledger sum of both) for one member."""
    member = Member.get_by_id(member_id)
    rows = Ledger.select().where(
        (Ledger.member_id == member_id) & (Ledger.account.in_(["sv_principal", "sv_bonus"]))
    )
    return member.sv_principal + member.sv_bonus, sum(r.delta for r in rows)


def test_a_topup_whose_member_is_merged_after_the_swipe_lands_on_the_survivor(
    client, demo_till, monkeypatch
):
    headers = sign_in(client)
    loser = Member.get(Member.name == "张三")
    survivor = Member.get(Member.name == "李四")
    total_before = _stored_value(loser.id)[0] + _stored_value(survivor.id)[0]
    swiped = sales.find_member

    def swipe_then_merge(till, ref):
        member = swiped(till, ref)  # the swipe sees 张三 active ...
        _merge_at_hq(till, loser.id, survivor.id)  # ... and the agent merges him meanwhile
        return member

    monkeypatch.setattr(sales, "find_member", swipe_then_merge)
    res = client.post(
        "/api/v1/topups", headers=headers, json={"member": {"card_no": "C0001"}, "amount": 10000}
    )
    assert res.status_code == 201, res.json
    credited = res.json["principal"] + res.json["bonus"]
    assert res.json["principal"] == 10000

    assert Member.get_by_id(loser.id).status == "merged"
    assert _stored_value(loser.id) == (0, 0)
    shown, ledgered = _stored_value(survivor.id)
    assert shown == ledgered == total_before + credited
