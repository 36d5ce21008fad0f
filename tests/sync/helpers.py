"""Stores, HQ workers and agents for the sync tests: real processes where it matters.

peewee binds model classes to one database at a time, so the test process touches
each store's SQLite file inside ``store.bound()``; each store's sync agent runs as
its own process (``python -m edge.cli serve-sync``), as it does on the box.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from core.rules import DEMO_RULES
from edge.config import load_config
from edge.demo_data import load_demo
from edge.models import MODELS, Ledger, Member, Outbox, PointsLot
from edge.phones import find_by_phone
from edge.services import members as member_svc
from edge.services import sales
from edge.services import staff as staff_svc
from edge.services.context import SpendAuthorizer, Till, open_till
from edge.sync.demo import load_staff_and_products
from hq.models import bind as hq_bind
from hq.models import open_database as hq_open
from hq.rules import publish_rules
from tests.broker import Mosquitto

ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def announce_hq_offline(chain: dict[str, Any]) -> None:
    """Stop the chain's HQ worker and publish HQ's retained state as offline (what its
    will says when it dies): the store's authorizer then decides every spend offline."""
    from core import protocol as p

    chain["worker"].stop()
    chain["mosquitto"].publish(
        "hq",
        p.hq_state_topic(),
        p.encode_json(p.PeerState(False, "2026-11-23T10:00:00+08:00").to_dict()),
        retain=True,
    )
    wait_until(lambda: chain["authorizer"].hq_online is False, 10, "HQ offline seen")


def init_hq(db_url: str):  # noqa: ANN201
    db = hq_open(db_url)
    hq_bind(db)
    publish_rules(db, DEMO_RULES.to_dict())
    return db


def store_toml(workdir: Path, code: str, broker: Mosquitto | None, **sync: Any) -> Path:
    """The store's edge.toml; its [sync] reaches ``broker`` with the store's certificate
    (``None``: a box whose agent never runs, given an address nothing listens on)."""
    if broker is None:
        reach: dict[str, Any] = {"broker_url": "mqtt://127.0.0.1:9"}
    else:
        reach = {"broker_url": broker.url, **broker.tls_args(code)}
    sync = {**reach, "ack_timeout": 1.0, "snapshot_timeout": 10.0, **sync}
    lines = [
        f'data_dir = "{workdir / "edge"}"',
        "",
        "[store]",
        f'code = "{code}"',
        "",
        "[security]",
        "scrypt_n = 1024",
        "",
        "[offline.stored_value]",
        'mode = "floor_limit"',
        "daily_limit = 5000",
        "",
        "[offline.points]",
        'mode = "floor_limit"',
        "daily_limit = 300",
        "",
        "[sync]",
    ]
    for key, value in sync.items():
        lines.append(f"{key} = " + (f'"{value}"' if isinstance(value, str) else repr(value)))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "edge.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def ledger_mismatches(code: str, today: dt.date) -> list[str]:
    """Members of the bound store database whose cached balances differ from the sum of
    their ledger entries."""
    bad = []
    for m in Member.select():
        sums = {"sv_principal": 0, "sv_bonus": 0, "points": 0}
        for row in Ledger.select().where(Ledger.member_id == m.id):
            sums[row.account] += row.delta
        points = member_svc.points_balance(m.id, today) - m.points_debt
        if (m.sv_principal, m.sv_bonus) != (sums["sv_principal"], sums["sv_bonus"]):
            bad.append(f"{m.id}: sv {m.sv_principal}/{m.sv_bonus} ledger {sums}")
        elif points != sums["points"]:
            rows = [
                (r.account, r.delta, r.reason, r.ref)
                for r in Ledger.select().where(Ledger.member_id == m.id)
            ]
            lots = [
                (lot.lot_id, lot.remaining)
                for lot in PointsLot.select().where(PointsLot.member_id == m.id)
            ]
            bad.append(
                f"{m.id} ({m.status}) at {code}: points {points} "
                f"ledger {sums['points']} {rows} lots {lots} debt {m.points_debt}"
            )
    return bad


class StoreBox:
    """One store: its till (opened in the test process) and its sync agent process."""

    def __init__(
        self,
        workdir: Path,
        code: str,
        broker: Mosquitto | None,
        authorizer: SpendAuthorizer | None = None,
        **sync: Any,
    ) -> None:
        self.code = code
        self.workdir = workdir
        self.config_path = store_toml(workdir, code, broker, **sync)
        self.config = load_config(self.config_path)
        self.till: Till = open_till(self.config, authorizer=authorizer, create_key=True)
        self.agent: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "agent.log"
        self._log = None
        self._staff: staff_svc.SignedIn | None = None

    @contextlib.contextmanager
    def bound(self) -> Iterator[Till]:
        with self.till.db.bind_ctx(MODELS):
            yield self.till

    # ---- setup --------------------------------------------------------------------

    def load_demo(self, members: int = 2) -> None:
        with self.bound():
            load_demo(self.till, members=members)

    def load_staff_and_products(self) -> None:
        with self.bound():
            load_staff_and_products(self.till)

    def staff(self) -> staff_svc.SignedIn:
        if self._staff is None:
            with self.bound():
                _, self._staff = staff_svc.sign_in(self.till, "1001", "1234")
        return self._staff

    # ---- the till -----------------------------------------------------------------

    def sell(
        self,
        member: dict[str, str] | None = None,
        lines: list[dict[str, Any]] | None = None,
        tenders: list[dict[str, Any]] | None = None,
        password: str | None = None,
        sale_id: str | None = None,
    ) -> dict[str, Any]:
        staff = self.staff()
        with self.bound():
            req = {
                "member": member,
                "lines": lines or [{"sku": "P0001", "qty": 1}],
                "tenders": tenders or [{"kind": "cash", "amount": 100000}],
            }
            if password:
                req["member_password"] = password
            if sale_id:
                req["sale_id"] = sale_id
            return sales.checkout(self.till, staff, sales.CheckoutRequest.from_request(req))

    def top_up(self, member: dict[str, str], amount: int) -> dict[str, Any]:
        staff = self.staff()
        with self.bound():
            return sales.top_up(self.till, staff, member, amount)

    def register(self, name: str, phone: str, card_no: str | None = None) -> str:
        with self.bound():
            reg = member_svc.Registration(name=name, phone=phone, card_no=card_no)
            return member_svc.register(self.till, reg, "1001").id

    def member(self, member_id: str) -> Member | None:
        with self.bound():
            try:
                return member_svc.resolve(member_id)
            except Exception:
                return None

    def member_by_phone(self, phone: str) -> Member | None:
        with self.bound():
            return find_by_phone(self.till.keys, phone)

    def query(self, fn: Callable[[], Any]) -> Any:
        with self.bound():
            return fn()

    def pending(self) -> int:
        return self.query(lambda: Outbox.select().where(Outbox.acked == False).count())  # noqa: E712

    def outbox_count(self) -> int:
        return self.query(lambda: Outbox.select().count())

    def ledger_matches_balances(self) -> list[str]:
        """Members whose cached balances differ from the sum of their ledger entries."""
        return self.query(lambda: ledger_mismatches(self.code, self.till.now().date()))

    # ---- the agent process ----------------------------------------------------------

    def start_agent(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if self._log is not None:
            self._log.close()
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.agent = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "-c", str(self.config_path), "serve-sync"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGKILL)
            self.agent.wait(timeout=10)
        self.agent = None

    def stop_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait(timeout=5)
        self.agent = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        self.stop_agent()
        self.till.db.close()

    def agent_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class HqProcess:
    """``python -m hq.cli serve-ingest`` with an optional fault injected."""

    def __init__(
        self, db_url: str, broker: Mosquitto, client_id: str, log: Path, fault: str = ""
    ) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("HY_HQ_FAULT", None)
        if fault:
            env["HY_HQ_FAULT"] = fault
        self._log = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hq.cli",
                "--database-url",
                db_url,
                *broker.cli_args("hq"),
                "serve-ingest",
                "--client-id",
                client_id,
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


def issue_ten_off_coupon(hq_url: str, broker: Mosquitto, member_id: str, ref: str) -> str:
    """HQ adds the template 满100减10 (TEN100) and issues one to the member with its CLI, as
    a head office does beside the running worker (a process of its own: in this process it
    would rebind the models the test's worker thread writes through, and on SQLite the two
    met on the lock); returns the coupon's code once the store holds it."""
    from edge.models import SyncCoupon
    from edge.sync.apply import down_cursor
    from hq.changes import latest_change_seq

    def hq_cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "hq.cli", "--database-url", hq_url,
             *broker.cli_args("hq"), *args],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip

    caught_up = lambda: down_cursor() == latest_change_seq()  # noqa: E731
    wait_until(caught_up, 20, "the store caught up")
    added = hq_cli("coupon-template", "add", "--id", "TEN100", "--name", "满100减10",
                   "--kind", "amount", "--amount", "1000", "--min-spend", "10000",
                   "--valid-days", "30", "--by", "hq-li")  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    wait_until(caught_up, 20, "the template at the store")
    issued = hq_cli("issue-coupons", "TEN100", "--member", member_id, "--by", "hq-li",
                    "--ref", ref)  # fmt: skip
    assert issued.returncode == 0, issued.stdout + issued.stderr
    [code] = [ln for ln in issued.stdout.splitlines() if ln]
    wait_until(
        lambda: (row := SyncCoupon.get_or_none(SyncCoupon.code == code)) and row.status == "issued",
        20,
        "the coupon at the store",
    )
    return code
