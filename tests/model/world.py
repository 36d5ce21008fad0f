"""A small chain for the model-based test: real tills, real sync agents, real HQ, real broker.

One ``Chain`` is one world: a private Mosquitto, an HQ ingest worker (in this process, on
SQLite or PostgreSQL), and two or three stores. Each store is a ``StoreBox`` (its SQLite
till opened here, its sync agent a ``python -m edge.cli serve-sync`` process) driven
through the real Flask till API, with an in-process ``MqttAuthorizer`` for online spends
and the store's ``[offline]`` floor limits (tests/sync/helpers.store_toml) for offline
ones. ``settle()`` waits, bounded, until every outbox is acknowledged and every store's
down cursor has reached HQ's latest change; ``discrepancies()`` then lists, per member,
every place whose figures differ from HQ's.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peewee as pw

from edge.api import create_app
from edge.models import Ledger
from edge.models import Member as EdgeMember
from edge.services.members import points_balance
from edge.sync.apply import down_cursor
from edge.sync.authorizer import MqttAuthorizer
from edge.sync.config import SyncConfig
from hq.changes import latest_change_seq
from hq.ledger import ledger_sums
from hq.models import Member as HqMember
from hq.models import Store as HqStore
from hq.worker import IngestWorker
from tests.broker import Mosquitto, TestPki
from tests.hq.conftest import hq_config
from tests.sync.helpers import StoreBox, init_hq

MANAGER = {"staff_code": "9001", "pin": "9999"}  # edge/demo_data.DEMO_STAFF
PASSWORD = "123456"  # every member the model registers pays stored value with it
FIGURES = ("principal", "bonus", "points", "points_debt")


@dataclass
class Till:
    """One store as the model sees it: the box, its till API client and its authorizer."""

    box: StoreBox
    authorizer: MqttAuthorizer
    client: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    agent_up: bool = False

    @property
    def code(self) -> str:
        return self.box.code

    def call(self, method: str, path: str, json: Any = None) -> tuple[int, dict[str, Any]]:
        """One till API request; peewee's models are bound to this store while it runs."""
        with self.box.bound():
            res = self.client.open(path, method=method, json=json, headers=self.headers)
        return res.status_code, (res.get_json(silent=True) or {})


class Chain:
    """The world one example of the state machine runs in; ``close()`` ends every part."""

    def __init__(self, workdir: Path, hq_url: str, stores: int = 3) -> None:
        self.workdir = workdir
        self.hq_url = hq_url
        self.broker = Mosquitto(workdir / "mosquitto", TestPki(workdir / "pki"))
        self.broker.start()
        self.broker_up = True
        self.hq_db = init_hq(hq_url)
        self.worker = IngestWorker(hq_config(hq_url, self.broker), db=self.hq_db).start()
        self.tills: list[Till] = []
        try:
            for i in range(stores):
                self.tills.append(self._open_till(i))
        except BaseException:
            self.close()
            raise

    def _open_till(self, i: int) -> Till:
        code = f"M{i}{time.monotonic_ns() % 10**6:06d}"
        cfg = SyncConfig.from_dict(
            {"broker_url": self.broker.url, **self.broker.tls_args(code), "ack_timeout": 1.0}
        )
        authorizer = MqttAuthorizer(code, cfg).start(wait=5)
        box = StoreBox(self.workdir / f"store{i}", code, self.broker, authorizer=authorizer)
        box.load_staff_and_products()
        till = Till(box, authorizer, create_app(box.till).test_client())
        status, body = till.call("POST", "/api/v1/session", MANAGER)
        assert status == 201, body
        till.headers = {"Authorization": f"Bearer {body['token']}"}
        box.start_agent()
        till.agent_up = True
        return till

    # ---- faults ---------------------------------------------------------------------

    def stop_broker(self, kill: bool = False) -> None:
        if kill:
            self.broker.kill()
        else:
            self.broker.stop()
        self.broker_up = False

    def start_broker(self) -> None:
        self.broker.start()
        self.broker_up = True

    def stop_agent(self, till: Till, kill: bool) -> None:
        if kill:
            till.box.kill_agent()
        else:
            till.box.stop_agent()
        till.agent_up = False

    def start_agent(self, till: Till) -> None:
        till.box.start_agent()
        till.agent_up = True

    # ---- settling -------------------------------------------------------------------

    def sync_state(self) -> dict[str, tuple[int, int]]:
        """Per store: (outbox items not yet acknowledged, down cursor)."""
        return {t.code: (t.box.pending(), t.box.query(down_cursor)) for t in self.tills}

    def settle(self, timeout: float = 90.0) -> None:
        """Broker and agents up, then wait until every store's outbox is acknowledged and
        every store's down cursor has reached HQ's latest change (bounded by ``timeout``)."""
        if not self.broker_up:
            self.start_broker()
        for t in self.tills:
            if not t.agent_up or t.box.agent is None or t.box.agent.poll() is not None:
                self.start_agent(t)
        deadline = time.monotonic() + timeout
        while True:
            latest = latest_change_seq()
            state = self.sync_state()
            if all(pending == 0 and cursor >= latest for pending, cursor in state.values()):
                return
            if time.monotonic() > deadline:
                acked = {s.code: s.acked_through for s in HqStore.select()}
                lines = [
                    f"  store {code}: {pending} outbox item(s) not acknowledged "
                    f"(HQ acked through {acked.get(code)}), down cursor {cursor} of HQ's {latest}"
                    for code, (pending, cursor) in state.items()
                ]
                raise AssertionError(
                    f"the chain did not settle within {timeout:.0f}s:\n" + "\n".join(lines)
                )
            time.sleep(0.1)

    # ---- figures --------------------------------------------------------------------

    def hq_survivor(self, member_id: str) -> HqMember | None:
        member = HqMember.get_or_none(HqMember.id == member_id)
        for _ in range(10):  # a merge chain is short; bounded all the same
            if member is None or member.status != "merged" or not member.merged_into:
                return member
            member = HqMember.get_or_none(HqMember.id == member.merged_into)
        return member

    def discrepancies(self, expected: dict[str, dict[str, int]]) -> list[str]:
        """Every member whose figures disagree anywhere, with every place's figures.

        ``expected`` holds, per member id, the sum of the balance movements the tills
        answered (top-ups, sales, returns): the model. Per surviving member it must equal
        HQ's balance, HQ's ledger sum, each store's shown balance (the till API's member
        lookup) and each store's own ledger sum; the ids merged into it count towards it. A
        member merged away must hold nothing, at HQ and in every store's cache and ledger."""
        out: list[str] = []
        survivors: dict[str, list[str]] = {}
        for member_id in expected:
            survivor = self.hq_survivor(member_id)
            if survivor is None:
                out.append(f"member {member_id}: unknown at HQ (its registration never arrived)")
                continue
            survivors.setdefault(survivor.id, [])
            if survivor.id != member_id:
                survivors[survivor.id].append(member_id)
        for member_id, merged in sorted(survivors.items()):
            model = {k: 0 for k in ("principal", "bonus", "points")}
            for one in (member_id, *merged):
                for k in model:
                    model[k] += expected.get(one, {}).get(k, 0)
            out += self._member_discrepancies(member_id, merged, figures(**model))
        return out

    def _member_discrepancies(
        self, member_id: str, merged: list[str], model: dict[str, int]
    ) -> list[str]:
        hq = HqMember.get_by_id(member_id)
        truth = figures(hq.sv_principal, hq.sv_bonus, hq.points)
        sums = ledger_sums(member_id)
        places: list[tuple[str, dict[str, int] | None]] = [
            ("HQ", truth),
            ("HQ ledger", figures(sums["principal"], sums["bonus"], sums["points"])),
        ]
        for t in self.tills:
            status, body = t.call("GET", f"/api/v1/members/{member_id}")
            shown = None
            if status == 200:
                m = body["member"]
                shown = {
                    "principal": m["stored_value"]["principal"],
                    "bonus": m["stored_value"]["bonus"],
                    "points": m["points"],
                    "points_debt": m["points_debt"],
                }
            places.append((f"store {t.code}", shown))
            places.append((f"store {t.code} ledger", t.box.query(lambda: edge_ledger(member_id))))
        places.append(("model (sum of what the tills answered)", model))
        out = []
        if any(got != truth for _, got in places):
            name = f"member {member_id}" + (f" (survivor of {', '.join(merged)})" if merged else "")
            out.append(f"{name}: figures disagree")
            out += [
                f"    {place:<40} {fmt(got)}" + ("" if got == truth else "   <- differs from HQ")
                for place, got in places
            ]
        zero = figures(0, 0, 0)
        for old in merged:
            loser = HqMember.get_by_id(old)
            sums = ledger_sums(old)
            held = [
                ("HQ", figures(loser.sv_principal, loser.sv_bonus, loser.points)),
                ("HQ ledger", figures(sums["principal"], sums["bonus"], sums["points"])),
            ]
            for t in self.tills:
                today = t.box.till.now().date()
                cached = t.box.query(lambda m=old, d=today: edge_cached(m, d))
                held.append((f"store {t.code}", cached))
                held.append((f"store {t.code} ledger", t.box.query(lambda m=old: edge_ledger(m))))
            out += [
                f"member {old} (merged into {member_id}): {place} still holds {fmt(got)}"
                for place, got in held
                if got is not None and got != zero
            ]
        return out

    # ---- the end --------------------------------------------------------------------

    def close(self) -> None:
        for t in self.tills:
            t.box.close()
            t.authorizer.stop()
        self.worker.stop()
        self.broker.stop()


def figures(principal: int, bonus: int, points: int, debt: int | None = None) -> dict[str, int]:
    """The four figures compared everywhere; a points debt is what lies below zero."""
    return {
        "principal": principal,
        "bonus": bonus,
        "points": points,
        "points_debt": max(0, -points) if debt is None else debt,
    }


def fmt(values: dict[str, int] | None) -> str:
    if values is None:
        return "nothing (member unknown there)"
    return ", ".join(f"{k} {values[k]}" for k in FIGURES)


def edge_ledger(member_id: str) -> dict[str, int]:
    """The sums of a store's own ledger for one member id (bound to that store)."""
    rows = (
        Ledger.select(Ledger.account, pw.fn.SUM(Ledger.delta))
        .where(Ledger.member_id == member_id)
        .group_by(Ledger.account)
        .tuples()
    )
    sums = {account: int(total) for account, total in rows}
    return figures(sums.get("sv_principal", 0), sums.get("sv_bonus", 0), sums.get("points", 0))


def edge_cached(member_id: str, today: dt.date) -> dict[str, int] | None:
    """A store's cached row for one member id, as it is (no alias resolution)."""
    m = EdgeMember.get_or_none(EdgeMember.id == member_id)
    if m is None:
        return None
    points = points_balance(member_id, today) - m.points_debt
    return figures(m.sv_principal, m.sv_bonus, points, m.points_debt)
