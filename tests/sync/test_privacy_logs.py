"""No phone number, PIN or password in any log (PIPL; COMMON standards).

A whole day of one member's data, with everything at DEBUG: staff sign in with a PIN
(once wrong), a member registers with a phone and a password at the till server, is
found by phone, tops up, pays with stored value (once with a wrong password, and
authorized online by HQ), changes consent; two stores sync through a real broker to an
HQ worker; HQ's consent, export, dead-letters and erase commands run. Then the root
logger's records (HQ worker and CLI, the test's own tills) and the log files of the
till server and both sync agents are searched for every secret used, as written and as
digits with their separators taken out."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

import pytest
from click.testing import CliRunner

from core.logsafe import VALUE_LOGGERS, keep_personal_data_out_of_logs
from edge.services import staff as staff_svc
from hq.cli import main as hq_main
from hq.models import Member as HqMember
from hq.models import bind as hq_bind
from tests.broker import free_port
from tests.sync.conftest import new_code, start_worker
from tests.sync.helpers import ROOT, StoreBox, wait_until

PHONE = "13957310284"
PHONE_AS_TYPED = "+86 139-5731-0284"
PHONE_AT_B = "15820476193"
CASHIER_PIN = "74056193"
WRONG_PIN = "74056194"
MANAGER_PIN = "38502764"
PASSWORD = "86240371"
WRONG_PASSWORD = "86240372"
SECRETS = (PHONE, PHONE_AT_B, CASHIER_PIN, WRONG_PIN, MANAGER_PIN, PASSWORD, WRONG_PASSWORD)


class VerboseStore(StoreBox):
    """A store whose sync agent logs at DEBUG."""

    def start_agent(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.agent = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "-c", str(self.config_path), "-v", "serve-sync"],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )


def call(method: str, url: str, body: dict | None = None, token: str | None = None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as res:  # noqa: S310 - a local test server
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def start_till_server(
    store: StoreBox, log_path: Path, log: BinaryIO
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with store.config_path.open("a", encoding="utf-8") as f:
        f.write(f"\n[http]\nport = {port}\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "-c", str(store.config_path), "-v", "serve"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    deadline = time.monotonic() + 30
    while True:
        try:
            call("GET", f"{base}/status")
            return server, base
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def leaks(text: str) -> list[str]:
    """The secrets found in a log text, as written or as digits run together (a phone
    logged as 139-5731-0284 or +86 139 5731 0284 is still the phone)."""
    joined = re.sub(r"(?<=\d)[\s\-().]+(?=\d)", "", text)
    return [s for s in SECRETS if s in text or s in joined]


@pytest.fixture
def debug_logs(caplog):
    """Everything at DEBUG, set up as the command lines set up their processes' logging
    (the HQ worker runs in this process)."""
    caplog.set_level(logging.DEBUG)
    levels = {name: logging.getLogger(name).level for name in VALUE_LOGGERS}
    keep_personal_data_out_of_logs()
    yield caplog
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_no_phone_pin_or_password_reaches_any_log(
    tmp_path, mosquitto, hq_db_url, stores, debug_logs
):
    caplog = debug_logs
    serve_log = (tmp_path / "serve.log").open("ab")
    worker = start_worker(hq_db_url, mosquitto)
    server = None
    try:
        a = VerboseStore(tmp_path / "a", new_code("A"), mosquitto)
        b = VerboseStore(tmp_path / "b", new_code("B"), mosquitto)
        stores += [a, b]
        for store in (a, b):
            store.load_staff_and_products()
        with a.bound() as till:
            staff_svc.add_staff(till, "2001", "测试收银", "cashier", CASHIER_PIN)
            staff_svc.add_staff(till, "2009", "测试店长", "manager", MANAGER_PIN)
        b.register("周九", PHONE_AT_B, card_no="B9001")
        server, base = start_till_server(a, tmp_path / "serve.log", serve_log)

        status, _ = call("POST", f"{base}/session", {"staff_code": "2001", "pin": WRONG_PIN})
        assert status == 403
        status, session = call(
            "POST", f"{base}/session", {"staff_code": "2001", "pin": CASHIER_PIN}
        )
        assert status == 201, session
        token = session["token"]
        reg = {
            "name": "孙八",
            "phone": PHONE_AS_TYPED,
            "password": PASSWORD,
            "card_no": "A9001",
            "consent": {"sms": True},
        }
        status, body = call("POST", f"{base}/members", reg, token)
        assert status == 201, body
        member_id = body["member"]["member_id"]
        status, found = call("GET", f"{base}/members?q={PHONE}", token=token)
        assert status == 200 and found["members"][0]["member_id"] == member_id
        status, _ = call("POST", f"{base}/members", {"name": "孙八", "phone": PHONE}, token)
        assert status == 409
        status, _ = call(
            "POST", f"{base}/topups", {"member": {"phone": PHONE}, "amount": 20000}, token
        )
        assert status == 201
        a.start_agent()
        b.start_agent()
        wait_until(lambda: a.pending() == 0, 30, "store A drained")
        sale = {
            "member": {"phone": PHONE},
            "lines": [{"sku": "P0002"}],
            "tenders": [
                {"kind": "stored_value", "amount": 1000},
                {"kind": "cash", "amount": 100000},
            ],
        }
        status, _ = call(
            "POST", f"{base}/sales", {**sale, "member_password": WRONG_PASSWORD}, token
        )
        assert status == 403
        status, body = call("POST", f"{base}/sales", {**sale, "member_password": PASSWORD}, token)
        assert status == 201, body
        status, _ = call(
            "PUT", f"{base}/members/{member_id}/consent", {"consent": {"call": True}}, token
        )
        assert status == 200
        wait_until(lambda: a.pending() == 0 and b.pending() == 0, 30, "both stores drained")
        wait_until(lambda: b.member(member_id), 30, "the member at store B")

        runner = CliRunner()
        hq = ["--database-url", hq_db_url, *mosquitto.cli_args("hq"), "-v"]
        for args in (
            ["consent", "--phone", PHONE, "--wechat", "yes", "--by", "hq-test"],
            ["export-member", "--phone", PHONE, "--out", str(tmp_path / "export.json")],
            ["export-member", "--phone", PHONE_AT_B],
            ["dead-letters"],
            ["erase-member", member_id, "--reason", "asked at the counter", "--yes"],
        ):
            result = runner.invoke(hq_main, [*hq, *args])
            assert result.exit_code == 0, (args, result.output)
        hq_bind(worker.db, create=False)
        assert HqMember.get_by_id(member_id).status == "erased"
        for store in (a, b):
            wait_until(
                lambda s=store: s.member(member_id).status == "erased", 30, "erased at stores"
            )
    finally:
        if server is not None:
            stop(server)
        serve_log.close()
        for store in stores:
            store.stop_agent()
        worker.stop()

    logs = {
        "root logger": caplog.text,
        "till server": (tmp_path / "serve.log").read_text(errors="replace"),
        "agent A": a.agent_log(),
        "agent B": b.agent_log(),
    }
    # what the search runs over is the real thing: each log has the lines of the flow
    assert f"member {member_id} erased" in logs["root logger"]
    assert logging.getLogger().getEffectiveLevel() == logging.DEBUG
    assert "till API for store" in logs["till server"] or "DEBUG" in logs["till server"]
    for name in ("agent A", "agent B"):
        assert "applied" in logs[name], logs[name][-2000:]
    found = {name: leaks(text) for name, text in logs.items()}
    assert found == {name: [] for name in logs}, {
        name: [line for line in text.splitlines() if leaks(line)][:10]
        for name, text in logs.items()
    }
