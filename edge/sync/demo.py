"""A whole demo chain on this machine: a private Mosquitto, HQ on SQLite, two stores.

    from edge.sync.demo import start_chain_demo
    chain = start_chain_demo("var/chain-demo")   # prints where everything listens
    chain.supervise()                            # until a signal or a child's exit

or ``python -m edge.sync.demo --dir var/chain-demo``. Every process is a real one
(``mosquitto``, ``huiyuan-hq serve-ingest`` and ``serve-api``, and per store
``huiyuan-edge serve`` and ``serve-sync``); each writes a log in the work directory.
HQ holds the rules the stores price with (the demo rules, published at start), so an
ordinary sale opens no exception at HQ.

The demo supervises its children: SIGTERM or SIGINT sent to it alone (or Ctrl-C to the
whole terminal) stops the children, then the broker; when a child exits on its own, the
demo says which one and with what code, stops the rest and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from core.rules import DEMO_RULES
from edge.server import stop_on_signals

ROOT = Path(__file__).resolve().parents[2]
STORES = (("S001", "会员示范店·北京"), ("S002", "会员示范店·天津"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if not found:
        raise RuntimeError("mosquitto is not installed: run `make setup`")
    return found


class PrivateBroker:
    """A Mosquitto of our own on 127.0.0.1:<port> (never the system one on 1883)."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = self.workdir / "mosquitto.conf"
        self.conf.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    "max_queued_messages 100000",
                    "max_inflight_messages 100",
                    "set_tcp_nodelay true",  # else Nagle meets delayed ACKs: 40 ms a leg
                    "persistence true",
                    f"persistence_location {self.workdir}/",
                    f"log_dest file {self.workdir / 'mosquitto.log'}",
                ]
            )
            + "\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> PrivateBroker:
        self.proc = subprocess.Popen(  # noqa: S603
            [mosquitto_binary(), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(self.port)
        return self

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None


def _terminate(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@dataclass
class ChainDemo:
    workdir: Path
    broker: PrivateBroker
    hq_api: str
    tills: dict[str, str]
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)  # start order
    logs: list[IO[bytes]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        """The children, last started first, then the broker."""
        for proc in reversed(self.children.values()):
            _terminate(proc)
        self.broker.stop()
        for log in self.logs:
            log.close()

    def exited(self) -> tuple[str, int] | None:
        """The first child (the broker included) that is no longer running, with its code."""
        procs = {**self.children, "mosquitto": self.broker.proc}
        for name, proc in procs.items():
            code = proc.poll() if proc is not None else None
            if code is not None:
                return name, code
        return None

    def supervise(self, poll: float = 0.2) -> int:
        """Run until ``stopping`` is set (the signal handlers set it) or a child exits; then
        stop everything. Returns the exit status: 0 when asked to stop, 1 when a child died."""
        status = 0
        try:
            while not self.stopping.wait(poll):
                gone = self.exited()
                if gone is not None:
                    name, code = gone
                    print(
                        f"demo: {name} exited with code {code} (log: {self.workdir}); "
                        "stopping the demo chain",
                        file=sys.stderr,
                        flush=True,
                    )
                    status = 1
                    break
            else:
                print("demo: stopping the demo chain", flush=True)
        finally:
            self.stop()
        return status


def _run_once(args: list[str]) -> None:
    """A command that must succeed before the demo goes on; its output is shown if it fails."""
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr or done.stdout}")


def _spawn(demo: ChainDemo, name: str, args: list[str]) -> None:
    log = open(demo.workdir / f"{name}.log", "ab")  # noqa: SIM115
    demo.logs.append(log)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    demo.children[name] = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )


def _store_config(workdir: Path, code: str, name: str, port: int, broker_url: str) -> Path:
    path = workdir / code / "edge.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'data_dir = "{workdir / code / "edge"}"\n\n'
        f'[store]\ncode = "{code}"\nname = "{name}"\n\n'
        f"[http]\nport = {port}\n\n"
        f'[sync]\nbroker_url = "{broker_url}"\n',
        encoding="utf-8",
    )
    return path


def load_staff_and_products(till) -> None:  # noqa: ANN001
    """The demo staff and products, without members (another store's members sync in)."""
    from edge.demo_data import DEMO_PRODUCTS, DEMO_STAFF
    from edge.models import Product, Staff
    from edge.services.staff import add_staff

    for code, name, role, pin in DEMO_STAFF:
        if Staff.get_or_none(Staff.code == code) is None:
            add_staff(till, code, name, role, pin)
    now = till.now().isoformat(timespec="seconds")
    with till.db.atomic():
        for sku, barcode, name, price, promo, no_md, no_pts in DEMO_PRODUCTS:
            Product.insert(
                sku=sku,
                barcode=barcode,
                name=name,
                price=price,
                promo_price=promo,
                no_member_discount=no_md,
                no_points=no_pts,
                updated_at=now,
            ).on_conflict_ignore().execute()


def start_chain_demo(workdir: str | Path = "var/chain-demo", demo_members: int = 50) -> ChainDemo:
    """Start Mosquitto, HQ (SQLite; ingest worker and API) and two stores (till API and
    sync agent each, S001 with demo members); print where each listens."""
    from edge.config import load_config
    from edge.demo_data import load_demo
    from edge.services.context import open_till

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    broker = PrivateBroker(workdir / "mosquitto").start()
    hq_url = f"sqlite:///{workdir / 'hq' / 'hq.sqlite3'}"
    hq_port = free_port()
    demo = ChainDemo(workdir, broker, f"http://127.0.0.1:{hq_port}/api", {})
    try:
        hq = ["hq.cli", "--database-url", hq_url, "--mqtt-url", broker.url]
        _run_once([*hq, "init-db"])
        # the rules the stores price with (they hold none from HQ yet: the demo rules);
        # without them HQ cannot re-price a member sale and opens an unknown_rules exception
        rules_file = workdir / "hq" / "rules.json"
        rules_file.write_text(json.dumps(DEMO_RULES.to_dict(), ensure_ascii=False), "utf-8")
        _run_once([*hq, "publish-rules", str(rules_file), "--no-push"])
        _spawn(demo, "hq-ingest", [*hq, "serve-ingest", "--client-id", "hq-demo-ingest"])
        _spawn(demo, "hq-api", [*hq, "serve-api", "--port", str(hq_port)])
        for n, (code, name) in enumerate(STORES):
            port = free_port()
            config_path = _store_config(workdir, code, name, port, broker.url)
            till = open_till(load_config(config_path), create_key=True)
            try:
                if n == 0:
                    load_demo(till, members=demo_members)
                else:
                    load_staff_and_products(till)  # its members come from HQ
            finally:
                till.db.close()
            cli = ["edge.cli", "-c", str(config_path)]
            _spawn(demo, f"{code}-sync", [*cli, "serve-sync"])
            _spawn(demo, f"{code}-till", [*cli, "serve"])
            demo.tills[code] = f"http://127.0.0.1:{port}/api/v1"
        wait_listening(hq_port)
        for url in demo.tills.values():
            wait_listening(int(url.split(":")[2].split("/")[0]))
    except BaseException:
        demo.stop()
        raise
    print(f"demo chain in {workdir} (logs: *.log there)")
    print(f"  broker        {broker.url}")
    print(f"  HQ API        {demo.hq_api}/stores  (database {hq_url})")
    for code, url in demo.tills.items():
        print(f"  store {code}    till API {url}/status  (sync agent running)")
    print(
        "  staff 1001/1234 cashier, 9001/9999 manager at both stores; 张三 (card C0001, "
        "password 123456) registered at S001 shows up at S002 once synced."
    )
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a Huiyuan demo chain: HQ and two stores")
    parser.add_argument("--dir", default="var/chain-demo", help="where the demo keeps its files")
    parser.add_argument("--members", type=int, default=50, help="demo members at S001")
    args = parser.parse_args()
    stopping = threading.Event()
    stop_on_signals(stopping)
    demo = start_chain_demo(args.dir, args.members)
    demo.stopping = stopping
    sys.exit(demo.supervise())


if __name__ == "__main__":
    main()
