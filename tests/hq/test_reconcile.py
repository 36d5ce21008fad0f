"""HQ's side of reconciliation over a real broker, with a scripted store: the drill-down,
the exceptions, the repair, what is not compared, and hostile digests dead-lettered."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from core import protocol as p
from core.digest import (
    DigestRows,
    Figures,
    MemberRow,
    StoreDigest,
    bucket_digests,
)
from core.ids import uuid7
from hq.changes import latest_change_seq
from hq.models import DeadLetter, HqException, ReconcileRecord
from hq.models import Member as HqMember
from hq.reconcile import (
    KIND_HQ_LEDGER,
    KIND_STORE_BALANCE,
    KIND_STORE_LEDGER,
    check_hq_ledger,
    hq_rows,
    reconcile_report,
)
from tests.hq.edge_sim import EdgeSim, Items, wait_until

NOW = dt.datetime(2026, 12, 4, 10, 0)


class DigestStore(EdgeSim):
    """A scripted store that also keeps HQ's digest requests and ledger fixes."""

    def __init__(self, url: str, store: str) -> None:
        self.requests: list[dict] = []
        self.fixes: list[dict] = []
        super().__init__(url, store)

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic.endswith("/down/digestreq"):
            with self.lock:
                self.requests.append(p.decode_json(msg.payload))
        elif msg.topic.endswith("/down/ledgerfix"):
            with self.lock:
                self.fixes.append(p.decode_json(msg.payload))
        else:
            super()._on_message(client, userdata, msg)

    def digest(
        self, rows: list[tuple[str, Figures]], cursor: int, pending=(), at: str = "18:00"
    ) -> None:
        digests = tuple(bucket_digests(sorted(rows), 1))
        msg = StoreDigest(self.store, at, 1, cursor, 0, 0, pending, digests, digests)
        self.publish("digest", p.encode_json(msg.to_dict()))


@pytest.fixture
def shop(mosquitto, store_code):
    sim = DigestStore(mosquitto, store_code)
    yield sim
    sim.close()


def seed(shop: DigestStore, n: int) -> list[str]:
    items = Items(shop.store)
    ids = [uuid7() for _ in range(n)]
    batch = []
    for i, mid in enumerate(ids):
        batch += [items.registration(mid, f"1390000{i:04d}"), items.topup(mid, 1000 * (i + 1))]
    shop.send(batch)
    shop.wait_acked(len(batch))
    return ids


def hq_figures() -> list[tuple[str, Figures]]:
    return list(hq_rows(HqMember._meta.database))


def reconcile_exceptions() -> list[HqException]:
    kinds = (KIND_STORE_BALANCE, KIND_STORE_LEDGER, KIND_HQ_LEDGER)
    return list(HqException.select().where(HqException.kind.in_(kinds)).order_by(HqException.id))


def test_a_differing_bucket_is_drilled_into_and_each_member_named_and_repaired(
    worker, shop, store_code
):
    zhang, li, wang = seed(shop, 3)
    ours = dict(hq_figures())
    cursor = latest_change_seq()

    # agreement: nothing asked, nothing opened
    shop.digest(list(ours.items()), cursor)
    wait_until(lambda: ReconcileRecord.get_or_none(name=f"digest:{store_code}"), 10, "saved")
    assert shop.requests == [] and reconcile_exceptions() == []

    # the store shows 张三 with 50 fen more, lacks 王五, and holds a member HQ never saw
    stranger = uuid7()
    shown = dict(ours)
    shown[zhang] = ours[zhang]._replace(sv_principal=ours[zhang].sv_principal + 50)
    del shown[wang]
    shown[stranger] = Figures(0, 0, 10, 0)
    shop.digest(list(shown.items()), cursor)
    (req,) = wait_until(lambda: list(shop.requests), 10, "HQ drills in")
    assert req["wanted"] == [0] and req["buckets"] == 1

    rows = tuple(
        MemberRow(m, f, ours.get(m, f)) for m, f in sorted(shown.items())
    )  # ledger: HQ's figures, or the stranger's own
    shop.publish(
        "digestrows",
        p.encode_json(DigestRows(store_code, req["request_id"], 1, cursor, (0,), rows).to_dict()),
    )
    (fix,) = wait_until(lambda: list(shop.fixes), 10, "ledger fix")
    found = {(e.kind, e.member_id): e for e in reconcile_exceptions()}
    assert set(found) == {
        (KIND_STORE_BALANCE, zhang),
        (KIND_STORE_BALANCE, wang),  # missing at the store
        (KIND_STORE_BALANCE, stranger),  # unknown at HQ: named, not repairable
        (KIND_STORE_LEDGER, stranger),
    }
    e = found[(KIND_STORE_BALANCE, zhang)]
    assert e.store == store_code
    assert e.details["hq"] == ours[zhang].to_dict()
    assert e.details["theirs"]["sv_principal"] == ours[zhang].sv_principal + 50
    assert found[(KIND_STORE_BALANCE, wang)].details["theirs"] is None
    assert found[(KIND_STORE_BALANCE, stranger)].details["hq"] is None
    # the repair: 张三 and 王五 go down again as changes; the store squares 张三's ledger
    assert fix["members"] == [zhang]
    resent = wait_until(
        lambda: {c["key"] for page in shop.live for c in page["changes"] if c["seq"] > cursor},
        10,
        "members re-sent",
    )
    assert resent == {zhang, wang}
    assert li not in resent
    assert found[(KIND_STORE_BALANCE, zhang)].details["repair_change"] > cursor

    # the same rows again: 张三 and 王五 now have changes after the rows' cursor, so they
    # are not compared; the stranger is, and gets no second exception while one is open
    shop.publish(
        "digestrows",
        p.encode_json(DigestRows(store_code, req["request_id"], 1, cursor, (0,), rows).to_dict()),
    )
    shop.digest(list(ours.items()), cursor, at="18:10")  # handled after
    wait_until(
        lambda: ReconcileRecord.get_by_id(f"digest:{store_code}").data["at"] == "18:10",
        10,
        "the rows handled",
    )
    assert len(reconcile_exceptions()) == 4
    assert len(shop.fixes) == 1

    # a digest at the old cursor: 张三 and 王五 have changes after it, so their bucket is
    # not compared (here: the only bucket)
    report = reconcile_report(HqMember._meta.database, NOW, [store_code])
    assert "0 buckets compared, 1 not settled, 0 differ" in report.lines[0]
    # the repairs no digest has confirmed yet still count as differences
    assert report.differences == 2
    assert all("not yet confirmed" in line for line in report.lines[1:])


def test_members_with_unacknowledged_items_are_not_compared(worker, shop, store_code):
    (zhang,) = seed(shop, 1)
    ours = dict(hq_figures())
    shown = {zhang: ours[zhang]._replace(sv_bonus=99)}  # a top-up HQ has not seen yet
    shop.digest(list(shown.items()), latest_change_seq(), pending=(0,))
    wait_until(lambda: ReconcileRecord.get_or_none(name=f"digest:{store_code}"), 10, "saved")
    report = reconcile_report(HqMember._meta.database, NOW, [store_code])
    assert report.differences == 0
    assert "0 buckets compared, 1 not settled" in report.lines[0]
    assert shop.requests == []


def test_hq_balance_is_checked_against_hq_ledger(hq_db):
    HqMember.create(id="m-ok", created_at=NOW, updated_at=NOW)
    HqMember.create(id="m-bad", sv_bonus=300, created_at=NOW, updated_at=NOW)
    diffs = check_hq_ledger(hq_db, NOW)
    assert [(d.member_id, d.hq.sv_bonus, d.theirs.sv_bonus) for d in diffs] == [("m-bad", 300, 0)]
    assert check_hq_ledger(hq_db, NOW + dt.timedelta(minutes=1)) is None  # not due yet
    again = check_hq_ledger(hq_db, NOW + dt.timedelta(minutes=1), force=True)
    assert len(again) == 1
    (e,) = reconcile_exceptions()  # one exception however often it is found
    assert (e.kind, e.member_id, e.store) == (KIND_HQ_LEDGER, "m-bad", None)


@pytest.mark.parametrize(
    ("topic", "make", "code"),
    [
        ("digest", lambda s: {"v": 1, "store": "OTHER1", "buckets": 1}, "invalid"),
        (
            "digest",
            lambda s: StoreDigest(
                "OTHER1", "t", 1, 0, 0, 0, (), ((0, "0" * 32),), ((0, "0" * 32),)
            ).to_dict(),
            "forged",
        ),
        (
            "digest",
            lambda s: {
                **StoreDigest(s, "t", 1, 0, 0, 0, (), ((0, "0" * 32),), ((0, "0" * 32),)).to_dict(),
                "shown": [[0, "zz"]],
            },
            "invalid",
        ),
        ("digestrows", lambda s: DigestRows("OTHER1", None, 1, 0, (), ()).to_dict(), "forged"),
        (
            "digestrows",
            lambda s: {**DigestRows(s, None, 1, 0, (), ()).to_dict(), "down_cursor": 2**64},
            "invalid",
        ),
    ],
)
def test_hostile_digests_are_dead_lettered_with_a_reason(
    worker, shop, store_code, topic, make, code
):
    shop.publish(topic, json.dumps(make(store_code)).encode())  # json: any size of int
    dead = wait_until(
        lambda: list(DeadLetter.select().where(DeadLetter.store == store_code)), 10, "dead letter"
    )
    assert [(d.code, d.topic) for d in dead] == [(code, p.up_topic(store_code, topic))]
    assert dead[0].reason


def test_reconcile_command_exit_codes_without_a_broker(hq_db, hq_db_url):
    from click.testing import CliRunner

    from hq.cli import main

    base = ["--database-url", hq_db_url, "--mqtt-url", "mqtt://127.0.0.1:1", "reconcile"]
    HqMember.create(id="m-1", created_at=NOW, updated_at=NOW)
    ok = CliRunner().invoke(main, base)
    assert (ok.exit_code, ok.output) == (0, "0 differences\n")
    # a store named that never sent a digest is a difference; --ask with no broker says so
    asked = CliRunner().invoke(main, [*base, "--ask", "--wait", "0", "--store", "S404"])
    assert asked.exit_code == 1
    assert "store S404: no fresh digest within 0s; its last one is used" in asked.output
    assert "store S404: no digest received yet" in asked.output
    HqMember.update(sv_principal=12).where(HqMember.id == "m-1").execute()
    bad = CliRunner().invoke(main, base)
    assert bad.exit_code == 1
    assert bad.output.splitlines() == [
        "ledger_mismatch member m-1 at HQ: HQ balance sv_principal=12 sv_bonus=0 points=0 "
        "points_debt=0; HQ ledger sv_principal=0 sv_bonus=0 points=0 points_debt=0",
        "1 differences",
    ]


def test_an_answered_request_stays_answered_when_a_periodic_digest_follows(hq_db):
    """A store with a periodic digest may send its next one before ``reconcile --ask``
    looks: the answer is still seen (the CLI waited out its 30 s for an answer it had
    received, once in a loaded test run)."""
    from hq.reconcile import answered, digest_requests, latest_digests, save_digest

    requests = digest_requests(["S1", "S2"])
    empty = tuple(bucket_digests([], 1))

    def digest(store: str, at: str, request_id: str | None) -> StoreDigest:
        return StoreDigest(store, at, 1, 5, 0, 0, (), empty, empty, request_id)

    assert answered(requests) == set()
    save_digest(digest("S1", "18:00", requests["S1"].request_id), NOW)
    save_digest(digest("S2", "18:00", str(uuid7())), NOW)  # an answer to someone else
    assert answered(requests) == {"S1"}
    save_digest(digest("S1", "18:01", None), NOW + dt.timedelta(seconds=1))  # periodic
    assert answered(requests) == {"S1"}
    # the latest digest is what is compared; the answers are not digests
    assert [(d.store, d.at) for d in latest_digests()] == [("S1", "18:01"), ("S2", "18:00")]
    assert answered(digest_requests(["S1"])) == set()  # a new request: not yet
