"""Reconciliation end to end: real broker, real sync agents, HQ on SQLite and PostgreSQL.

Stores report balance digests; HQ compares them with its figures, drills into the
buckets that differ, opens one exception per member naming both figures, and repairs
the store from its record; ``huiyuan-hq reconcile`` says the same and exits non-zero.
"""

from __future__ import annotations

import subprocess
import sys

from peewee import fn

from edge.models import Ledger, PointsLot
from edge.models import Member as EdgeMember
from hq.models import HqException, ReconcileRecord
from hq.models import Member as HqMember
from hq.reconcile import KIND_HQ_LEDGER, KIND_STORE_BALANCE, KIND_STORE_LEDGER
from tests.broker import Mosquitto
from tests.sync.conftest import new_code, start_worker
from tests.sync.helpers import ROOT, StoreBox, wait_until

ZHANG = "13800000001"
RECONCILE_KINDS = (KIND_STORE_BALANCE, KIND_STORE_LEDGER, KIND_HQ_LEDGER)


def reconcile_cli(db_url: str, broker: Mosquitto, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-m",
            "hq.cli",
            "--database-url",
            db_url,
            *broker.cli_args("hq"),
            "reconcile",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def store_points(box: StoreBox, member_id: str) -> int:
    def points() -> int:
        lots = PointsLot.select(fn.COALESCE(fn.SUM(PointsLot.remaining), 0))
        total = int(lots.where(PointsLot.member_id == member_id).scalar())
        return total - EdgeMember.get_by_id(member_id).points_debt

    return box.query(points)


def open_exceptions(kind: str | None = None) -> list[HqException]:
    query = HqException.select().where(
        HqException.kind.in_(RECONCILE_KINDS) & (HqException.status == "open")
    )
    if kind is not None:
        query = query.where(HqException.kind == kind)
    return list(query.order_by(HqException.id))


def test_a_tampered_store_balance_is_found_named_repaired_and_confirmed(
    tmp_path, mosquitto, hq_db_url, stores
):
    worker = start_worker(hq_db_url, mosquitto)
    try:
        # A reports a digest every second; B only when HQ asks
        a = StoreBox(tmp_path / "a", new_code("A"), mosquitto, digest_interval=1.0)
        b = StoreBox(tmp_path / "b", new_code("B"), mosquitto, digest_interval=0.0)
        stores += [a, b]
        a.load_demo(members=6)
        b.load_staff_and_products()
        a.top_up({"card_no": "C0001"}, 10000)
        a.sell({"card_no": "C0001"}, [{"sku": "P0002", "qty": 1}])
        a.start_agent()
        wait_until(lambda: a.pending() == 0, 30, "store A drained")
        b.start_agent()
        zhang = wait_until(lambda: b.member_by_phone(ZHANG), 30, "张三 at store B").id
        hq = HqMember.get_by_id(zhang)
        wait_until(lambda: b.member(zhang).sv_principal == hq.sv_principal, 15, "B settled")

        # A's periodic digest arrives unasked
        wait_until(
            lambda: ReconcileRecord.get_or_none(ReconcileRecord.name == f"digest:{a.code}"),
            15,
            "A's periodic digest",
        )
        # agreement: no exception, exit 0, every bucket of both stores compared
        agreed = reconcile_cli(hq_db_url, mosquitto, "--ask")
        assert agreed.returncode == 0, agreed.stdout + agreed.stderr
        assert f"store {b.code}: digest of" in agreed.stdout
        assert "256 buckets compared, 0 not settled, 0 differ" in agreed.stdout
        assert open_exceptions() == []

        # tamper B's cached balance directly in its SQLite (its ledger stays right)
        b.query(
            lambda: (
                EdgeMember.update(sv_principal=EdgeMember.sv_principal + 5000)
                .where(EdgeMember.id == zhang)
                .execute()
            )
        )
        assert b.member(zhang).sv_principal == hq.sv_principal + 5000

        # whether the CLI compares before or after HQ's worker has drilled in and sent the
        # repair, the difference stands until a digest confirms the repair
        found = reconcile_cli(hq_db_url, mosquitto, "--ask", "--store", b.code)
        assert found.returncode == 1, found.stdout + found.stderr
        assert f"store {b.code}" in found.stdout
        assert ZHANG not in found.stdout + found.stderr  # no phone numbers

        # HQ drilled into the bucket: one exception naming the member, the store and both
        # figures, and only the cached balance differs (B's ledger agrees with HQ)
        wait_until(lambda: open_exceptions(KIND_STORE_BALANCE), 20, "balance_mismatch")
        (exc,) = open_exceptions()
        assert (exc.kind, exc.member_id, exc.store) == (KIND_STORE_BALANCE, zhang, b.code)
        assert exc.details["hq"]["sv_principal"] == hq.sv_principal
        assert exc.details["theirs"]["sv_principal"] == hq.sv_principal + 5000

        # before a digest confirms the repair, the CLI names the member and both figures
        pending = reconcile_cli(hq_db_url, mosquitto)
        assert pending.returncode == 1, pending.stdout + pending.stderr
        assert (
            f"{KIND_STORE_BALANCE} member {zhang} at store {b.code}: HQ balance "
            f"sv_principal={hq.sv_principal} "
        ) in pending.stdout
        assert f"store balance sv_principal={hq.sv_principal + 5000} " in pending.stdout
        assert ZHANG not in pending.stdout + pending.stderr

        # the store is repaired from HQ's record, and its ledger still equals its balances
        wait_until(lambda: b.member(zhang).sv_principal == hq.sv_principal, 20, "B repaired")
        wait_until(lambda: b.ledger_matches_balances() == [], 10, "B's ledger squared")
        assert a.member(zhang).sv_principal == hq.sv_principal

        # while the exception stays open for staff, the figures agree again: exit 0
        confirmed = wait_until(
            lambda: (r := reconcile_cli(hq_db_url, mosquitto, "--ask")).returncode == 0 and r,
            40,
            "reconcile exit 0 after repair",
        )
        assert "0 differences" in confirmed.stdout
        assert len(open_exceptions()) == 1  # not duplicated by later digests
    finally:
        worker.stop()


def test_hq_balance_against_hq_ledger_is_found_and_not_pushed_to_stores(
    tmp_path, mosquitto, hq_db_url, stores
):
    worker = start_worker(hq_db_url, mosquitto)
    try:
        a = StoreBox(tmp_path / "a", new_code("A"), mosquitto, digest_interval=0.0)
        stores.append(a)
        a.load_demo(members=3)
        a.top_up({"card_no": "C0001"}, 2000)
        a.start_agent()
        wait_until(lambda: a.pending() == 0, 30, "store A drained")
        zhang = a.member_by_phone(ZHANG).id
        wait_until(
            lambda: a.member(zhang).sv_principal == HqMember.get_by_id(zhang).sv_principal,
            15,
            "A settled",
        )
        assert reconcile_cli(hq_db_url, mosquitto, "--ask").returncode == 0
        points_before = store_points(a, zhang)

        # HQ's balance moves without a ledger entry (and without a change for the stores)
        HqMember.update(points=HqMember.points + 7).where(HqMember.id == zhang).execute()
        found = reconcile_cli(hq_db_url, mosquitto, "--ask")
        assert found.returncode == 1
        assert f"{KIND_HQ_LEDGER} member {zhang} at HQ" in found.stdout
        (exc,) = open_exceptions(KIND_HQ_LEDGER)
        assert exc.member_id == zhang and exc.store is None
        assert exc.details["hq"]["points"] == exc.details["theirs"]["points"] + 7
        # the store's figure differs from HQ's record, but that record is in doubt: the
        # store keeps its figure (which equals HQ's ledger) until staff decide
        wait_until(lambda: open_exceptions(KIND_STORE_BALANCE), 20, "store difference seen")
        assert store_points(a, zhang) == points_before
        assert a.ledger_matches_balances() == []
        again = reconcile_cli(hq_db_url, mosquitto)
        assert again.returncode == 1
        assert len(open_exceptions(KIND_HQ_LEDGER)) == 1
    finally:
        worker.stop()


def test_a_store_ledger_that_disagrees_with_its_balance_is_found_and_squared(
    tmp_path, mosquitto, hq_db_url, stores
):
    worker = start_worker(hq_db_url, mosquitto)
    try:
        a = StoreBox(tmp_path / "a", new_code("A"), mosquitto, digest_interval=0.0)
        stores.append(a)
        a.load_demo(members=3)
        a.sell({"card_no": "C0001"}, [{"sku": "P0002", "qty": 1}])
        a.start_agent()
        wait_until(lambda: a.pending() == 0, 30, "store A drained")
        zhang = a.member_by_phone(ZHANG).id
        hq = HqMember.get_by_id(zhang)
        wait_until(lambda: store_points(a, zhang) == hq.points, 15, "A settled")
        assert reconcile_cli(hq_db_url, mosquitto, "--ask").returncode == 0

        # a malformed request on the store's down topic (which only HQ's identity may
        # write) is dropped; the store keeps answering
        mosquitto.publish(
            "hq", f"hy/v1/{a.code}/down/digestreq", b'{"v": 1, "store": "%s"}' % a.code.encode()
        )
        # the store's ledger gains 40 points its balance does not show
        a.query(
            lambda: Ledger.create(
                member_id=zhang,
                account="points",
                delta=40,
                reason="sale",
                ref="tampered",
                occurred_at="2026-12-04T18:00:00+08:00",
                day="2026-12-04",
            )
        )
        assert a.ledger_matches_balances() != []
        found = reconcile_cli(hq_db_url, mosquitto, "--ask")
        assert found.returncode == 1, found.stdout + found.stderr
        (exc,) = wait_until(lambda: open_exceptions(), 20, "store_ledger_mismatch")
        assert (exc.kind, exc.member_id, exc.store) == (KIND_STORE_LEDGER, zhang, a.code)
        assert exc.details["theirs"]["points"] == hq.points + 40
        assert exc.details["hq"]["points"] == hq.points
        wait_until(lambda: a.ledger_matches_balances() == [], 20, "A's ledger squared")
        assert store_points(a, zhang) == hq.points
        confirmed = wait_until(
            lambda: (r := reconcile_cli(hq_db_url, mosquitto, "--ask")).returncode == 0 and r,
            40,
            "reconcile exit 0 after repair",
        )
        assert "0 differences" in confirmed.stdout
        assert "dropped a bad digestreq message" in a.agent_log()
    finally:
        worker.stop()
