"""A whole demo chain on this machine: a private Mosquitto, HQ on SQLite, two stores.

    from edge.sync.demo import start_chain_demo
    chain = start_chain_demo("var/chain-demo")   # prints where everything listens
    chain.supervise()                            # until a signal or a child's exit

or ``python -m edge.sync.demo --dir var/chain-demo``. Every process is a real one
(``mosquitto``, ``huiyuan-hq serve-ingest`` and ``serve-api``, and per store
``huiyuan-edge serve`` and ``serve-sync``); each writes a log in the work directory.
HQ holds the rules the stores price with (the demo rules, published at start), so an
ordinary sale opens no exception at HQ. Before the stores start, ``python -m
hq.demo_history`` writes six months of six other stores (S003..S008) through HQ's ingest,
so the console's charts and reports have a history to show, and HQ gets one console
account per role (``CONSOLE_ACCOUNTS``, passwords in ``hq/console-login.txt``).

It runs the secure setup a chain deploys (docs/operations.md), with the same commands:
``huiyuan-hq init-ca``, ``broker-config`` (TLS, client certificates, the ACL, the CRL),
Mosquitto started with that configuration, ``issue-identity hq`` for HQ's services,
and per store ``huiyuan-hq enrol-store`` then ``huiyuan-edge enrol`` through HQ's real
HTTP endpoint; the services then connect with the enrolled files. Only
``--insecure-anonymous`` (a laptop) runs the old plaintext anonymous broker instead.
Run again in the same directory, it keeps the CA and each store's identity.

The demo supervises its children: SIGTERM or SIGINT sent to it alone (or Ctrl-C to the
whole terminal) stops the children, then the broker; when a child exits on its own, the
demo says which one and with what code, stops the rest and exits with status 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from core.rules import DEMO_RULES
from edge.server import ignore_signals_from_now, stop_on_signals

ROOT = Path(__file__).resolve().parents[2]
STORES = (("S001", "会员示范店·北京"), ("S002", "会员示范店·天津"))
LIVE_AREA = "华北"  # the live stores' area; the history's stores are in 华东 and 华南
# HQ's console accounts the demo makes (username, role, scope, display name); passwords
# are generated once and kept in hq/console-login.txt (0600) for the next run
CONSOLE_ACCOUNTS = (
    ("admin", "admin", None, "总部管理员"),
    ("membership", "membership", None, "会员部经理"),
    ("analyst", "analyst", None, "数据分析师"),
    ("huadong", "area", "华东", "华东区域经理"),
    ("s001", "store", "S001", "北京店店长"),
)


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
    """A Mosquitto of our own on 127.0.0.1:<port> (never the system one on 1883): plaintext
    and anonymous (benchmarks, ``--insecure-anonymous``), or with ``secure_conf`` the
    configuration ``huiyuan-hq broker-config`` wrote for ``port``."""

    def __init__(
        self, workdir: Path, port: int | None = None, secure_conf: Path | None = None
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.secure = secure_conf is not None
        self.conf = secure_conf or self.workdir / "mosquitto.conf"
        if self.secure:
            return
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
        return f"{'mqtts' if self.secure else 'mqtt'}://127.0.0.1:{self.port}"

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


def _run_once(args: list[str], env: dict[str, str] | None = None) -> str:
    """A command that must succeed before the demo goes on; its output is shown if it
    fails. Returns what it printed on stdout."""
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr or done.stdout}")
    return done.stdout


def _spawn(demo: ChainDemo, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
    log = open(demo.workdir / f"{name}.log", "ab")  # noqa: SIM115
    demo.logs.append(log)
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    demo.children[name] = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )


def _store_config(
    workdir: Path, code: str, name: str, port: int, broker_url: str, secure: bool
) -> Path:
    """The store's edge.toml; a secure store's [sync] names the files `huiyuan-edge enrol`
    writes (on a box, systemd hands them over and [sync] names none)."""
    path = workdir / code / "edge.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    creds = _credentials_dir(workdir, code)
    tls = (
        f'ca = "{creds / "ca.pem"}"\ncert = "{creds / "store.pem"}"\n'
        f'key = "{creds / "store.key"}"\ncredentials_dir = "{creds}"\n'
        if secure
        else ""
    )
    path.write_text(
        f'data_dir = "{workdir / code / "edge"}"\n\n'
        f'[store]\ncode = "{code}"\nname = "{name}"\n\n'
        f"[http]\nport = {port}\n\n"
        f'[sync]\nbroker_url = "{broker_url}"\n{tls}',
        encoding="utf-8",
    )
    return path


def _credentials_dir(workdir: Path, code: str) -> Path:
    return workdir / code / "credentials"


def _secure_broker(workdir: Path, hq: list[str], env: dict[str, str]) -> PrivateBroker:
    """The chain CA (made once), the broker's configuration from `broker-config` for a free
    port on 127.0.0.1, and HQ's own client identity; the broker is not started yet."""
    if not (Path(env["HY_HQ_CA_DIR"]) / "ca.pem").exists():
        _run_once([*hq, "init-ca", "--name", "Huiyuan demo chain CA"], env)
    port = free_port()
    folder = workdir / "mosquitto"
    _run_once(
        [*hq, "broker-config", "--out", str(folder), "--port", str(port), "--host", "127.0.0.1"]
        + ["--bind", "127.0.0.1", "--persistence-dir", str(folder), "--key-group", ""],
        env,
    )
    conf = folder / "mosquitto.conf"
    with conf.open("a", encoding="utf-8") as out:
        # the demo's broker runs as whoever runs the demo (as root Mosquitto would switch
        # to its own user, who cannot read the demo's files) and logs beside them
        out.write(f"user {getpass.getuser()}\nlog_dest file {folder / 'mosquitto.log'}\n")
    identity = workdir / "hq" / "identity"
    if not (identity / "hq.pem").exists():
        _run_once([*hq, "issue-identity", "hq", "--out", str(identity)], env)
    return PrivateBroker(folder, port, secure_conf=conf)


def _enrol_store(workdir: Path, code: str, config: Path, hq: list[str], hq_url: str, env) -> None:  # noqa: ANN001
    """`huiyuan-hq enrol-store` and `huiyuan-edge enrol`: one command each side, through
    HQ's HTTP endpoint; a store that holds a working identity keeps it."""
    creds = _credentials_dir(workdir, code)
    if (creds / "store.pem").exists():
        return
    enrol_code = _run_once([*hq, "enrol-store", code, "--valid", "10m"], env).strip()
    _run_once(
        ["edge.cli", "-c", str(config), "enrol", "--hq", hq_url, "--store", code]
        + ["--code", enrol_code, "--credentials-dir", str(creds)]
    )


def _console_accounts(workdir: Path, base: list[str], env: dict[str, str]) -> dict[str, str]:
    """HQ's console accounts (``CONSOLE_ACCOUNTS``) made with ``huiyuan-hq add-user
    --generate``; their passwords are shown once and kept in a 0600 file beside HQ's
    database, which a second run reads (an account there without its password in the
    file gets a new one with ``reset-password --generate``). Username to password."""
    login_file = workdir / "hq" / "console-login.txt"
    known: dict[str, str] = {}
    if login_file.exists():
        for line in login_file.read_text("utf-8").splitlines():
            user, _, password = line.partition(" ")
            if password:
                known[user] = password
    existing = {u["username"] for u in json.loads(_run_once([*base, "users", "--json"], env))}
    passwords = {user: known[user] for user in existing if user in known}
    commands = {}
    for user, role, scope, name in CONSOLE_ACCOUNTS:
        if user in passwords:
            continue
        if user in existing:
            commands[user] = [*base, "reset-password", user, "--generate"]
        else:
            args = [*base, "add-user", user, "--role", role, "--name", name, "--generate"]
            commands[user] = args + (["--scope", scope] if scope else [])
    with ThreadPoolExecutor(max_workers=4) as pool:  # each is a process and a scrypt
        outputs = pool.map(lambda args: _run_once(args, env), commands.values())
        printed = dict(zip(commands, outputs, strict=True))
    for user, out in printed.items():
        passwords[user] = out.rsplit("password: ", 1)[1].strip()
    passwords = {user: passwords[user] for user, *_ in CONSOLE_ACCOUNTS}
    login_file.touch(mode=0o600)
    login_file.write_text("".join(f"{u} {pw}\n" for u, pw in passwords.items()), "utf-8")
    return passwords


def load_staff_and_products(till) -> None:  # noqa: ANN001
    """The demo staff and products, without members (another store's members sync in)."""
    from edge.demo_data import DEMO_PRODUCTS, DEMO_STAFF
    from edge.models import Product, Staff
    from edge.services.products import search_keys
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
                **search_keys(name),
            ).on_conflict_ignore().execute()


def start_chain_demo(
    workdir: str | Path = "var/chain-demo",
    demo_members: int = 50,
    insecure_anonymous: bool = False,
) -> ChainDemo:
    """Start Mosquitto, HQ (SQLite; ingest worker and API) and two stores (till API and
    sync agent each, S001 with demo members), enrolled as a chain's boxes are unless
    ``insecure_anonymous``; print where each listens."""
    from edge.config import load_config
    from edge.demo_data import load_demo
    from edge.services.context import open_till

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    hq_url = f"sqlite:///{workdir / 'hq' / 'hq.sqlite3'}"
    hq_port = free_port()
    hq_api = f"http://127.0.0.1:{hq_port}"
    env = {"HY_HQ_CA_DIR": str(workdir / "hq" / "ca")}
    base = ["hq.cli", "--database-url", hq_url]
    _run_once([*base, "init-db"], env)
    # HQ's first admin, as a chain makes it (docs/console.md), and one account per role
    accounts = _console_accounts(workdir, base, env)
    admin_password = accounts["admin"]
    if insecure_anonymous:
        broker = PrivateBroker(workdir / "mosquitto")
        hq = [*base, "--mqtt-url", broker.url]
    else:
        broker = _secure_broker(workdir, base, env)
        identity = workdir / "hq" / "identity"
        hq = [*base, "--mqtt-url", broker.url, "--mqtt-ca", str(identity / "ca.pem")]
        hq += ["--mqtt-cert", str(identity / "hq.pem"), "--mqtt-key", str(identity / "hq.key")]
        env["HY_HQ_STORE_BROKER_URL"] = broker.url
    broker.start()
    demo = ChainDemo(workdir, broker, f"{hq_api}/api", {})
    try:
        # the rules the stores price with (they hold none from HQ yet: the demo rules);
        # without them HQ cannot re-price a member sale and opens an unknown_rules exception
        rules_file = workdir / "hq" / "rules.json"
        rules_file.write_text(json.dumps(DEMO_RULES.to_dict(), ensure_ascii=False), "utf-8")
        _run_once([*hq, "publish-rules", str(rules_file), "--no-push"], env)
        # six months of six other stores through HQ's ingest, so that every chart and report
        # of the console has something to show (hq/demo_history.py; a second run adds nothing)
        live = [f"--live={code}:{name}:{LIVE_AREA}" for code, name in STORES]
        history = _run_once(["hq.demo_history", "--database-url", hq_url, *live], env).strip()
        # campaign messages and the member page's codes go to a local fake SMS gateway and
        # WeChat adapter (hq/channels/fake_gateway.py), configured as a chain configures
        # its real ones: URLs and a credential file; what they receive is in their log
        sms_port, wechat_port = free_port(), free_port()
        _spawn(demo, "fake-gateways", ["hq.channels.fake_gateway", str(sms_port), str(wechat_port)])
        credential = workdir / "hq" / "gateway.token"
        credential.write_text("fake-token\n", encoding="utf-8")
        credential.chmod(0o600)
        env |= {
            "HY_HQ_SMS_GATEWAY_URL": f"http://127.0.0.1:{sms_port}/sms/send",
            "HY_HQ_SMS_CREDENTIALS_FILE": str(credential),
            "HY_HQ_WECHAT_API_URL": f"http://127.0.0.1:{wechat_port}/wechat/template/send",
            "HY_HQ_WECHAT_CREDENTIALS_FILE": str(credential),
            "HY_HQ_WECHAT_TEMPLATE_ID": "demo-template",
            "HY_HQ_MEMBER_PAGE_URL": f"{hq_api}/m/{{token}}",
        }
        _spawn(demo, "hq-ingest", [*hq, "serve-ingest", "--client-id", "hq-demo-ingest"], env)
        _spawn(demo, "hq-api", [*hq, "serve-api", "--port", str(hq_port)], env)
        # HQ's periodic jobs, as a chain runs them (huiyuan-hq-scheduler.service): the
        # programme's nightly jobs and the reports' rollup the dashboard reads
        _spawn(demo, "hq-scheduler", [*hq, "serve-scheduler", "--node-id", "hq-demo"], env)
        wait_listening(hq_port)
        for n, (code, name) in enumerate(STORES):
            port = free_port()
            config_path = _store_config(
                workdir, code, name, port, broker.url, not insecure_anonymous
            )
            if not insecure_anonymous:
                _enrol_store(workdir, code, config_path, hq, hq_api, env)
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
        for url in demo.tills.values():
            wait_listening(int(url.split(":")[2].split("/")[0]))
    except BaseException:
        demo.stop()
        raise
    print(f"demo chain in {workdir} (logs: *.log there)")
    if insecure_anonymous:
        print(f"  broker        {broker.url}  INSECURE: anonymous, plaintext (a laptop only)")
    else:
        print(f"  broker        {broker.url}  (TLS, client certificates, the ACL)")
    print(f"  HQ API        {demo.hq_api}/stores  (database {hq_url})")
    print(f"  HQ console    {hq_api}/  总部后台: user admin, password {admin_password}")
    others = ", ".join(
        f"{user}/{accounts[user]} ({role}{' ' + scope if scope else ''})"
        for user, role, scope, _ in CONSOLE_ACCOUNTS
        if user != "admin"
    )
    print(f"  HQ accounts   {others}  (all in {workdir / 'hq' / 'console-login.txt'})")
    print(
        f"  SMS / WeChat  a local fake gateway takes campaign messages and the member page's "
        f"codes: {workdir / 'fake-gateways.log'}"
    )
    print(f"  {history}")
    for code, url in demo.tills.items():
        cashier = url.removesuffix("/api/v1")
        print(
            f"  store {code}    收银台 till {cashier}/  (health {url}/health; sync agent running)"
        )
    print(
        "  staff 1001/1234 cashier, 9001/9999 manager at both stores; 张三 (card C0001, "
        "password 123456) registered at S001 shows up at S002 once synced."
    )
    print(
        "  the till: sign in, Alt+S opens the shift with a float, scan 6901234567001..015 or"
        " type a name or pinyin (nfsq), F2 finds a member (C0001, zs), empty Enter pays cash;"
        " F1 lists every key (park F5/F6, return F7, reprint F8, top-up F4, close Alt+S)."
    )
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a Huiyuan demo chain: HQ and two stores")
    parser.add_argument("--dir", default="var/chain-demo", help="where the demo keeps its files")
    parser.add_argument("--members", type=int, default=50, help="demo members at S001")
    parser.add_argument(
        "--insecure-anonymous",
        action="store_true",
        help="INSECURE, for a laptop: a plaintext broker anyone may use as any store or as "
        "HQ, and no enrolment",
    )
    args = parser.parse_args()
    stopping = threading.Event()
    stop_on_signals(stopping)
    demo = start_chain_demo(args.dir, args.members, args.insecure_anonymous)
    demo.stopping = stopping
    status = demo.supervise()
    ignore_signals_from_now()
    sys.exit(status)


if __name__ == "__main__":
    main()
