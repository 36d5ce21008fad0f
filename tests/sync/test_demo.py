"""``python -m edge.sync.demo`` as a supervisor: a signal to it alone stops every child, a
child that dies is named and stops the demo, and an ordinary member sale opens no exception
at HQ (HQ holds the rules the stores price with)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.sync.helpers import ROOT, wait_until

pytestmark = pytest.mark.skipif(
    not (Path("/usr/sbin/mosquitto").exists() or os.path.exists("/usr/bin/mosquitto")),
    reason="mosquitto is not installed",
)


class Demo:
    """The demo in a session of its own (signals reach it alone), started as a shell starts
    a background job: with SIGINT ignored, which Python then leaves ignored unless the
    program installs a handler of its own."""

    def __init__(self, workdir: Path) -> None:
        self.fresh = not (workdir / "hq").exists()  # else a restart in an earlier run's dir
        demo = [sys.executable, "-m", "edge.sync.demo", "--dir", str(workdir), "--members", "2"]
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", "trap '' INT; exec \"$@\"", "sh", *demo],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.tills: dict[str, str] = {}
        self.banner: list[str] = []
        for line in self.proc.stdout:
            self.banner.append(line)
            if "收银台 till" in line:  # "  store S001    收银台 till http://.../  (health ...)"
                code, page = line.split()[1], line.split()[4]
                self.tills[code] = page.rstrip("/") + "/api/v1"
            elif line.startswith("  broker"):
                self.broker_url = line.split()[1]
            elif "HQ API" in line:
                self.hq_api = line.split()[2].removesuffix("/stores")
            elif (
                "HQ console" in line
            ):  # "  HQ console    http://.../  总部后台: user admin, password X"
                self.console = line.split()[2].rstrip("/")
                self.admin_password = line.rsplit("password ", 1)[1].strip()
            elif line.startswith("  staff"):
                break
        else:
            raise AssertionError(f"the demo did not start: {self.proc.stderr.read()}")
        self.children = child_pids(self.proc.pid)
        self.workdir = workdir

    def finish(self, timeout: float = 40.0) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout)
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            pipe.close()
        for pid in self.children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def child_pids(pid: int) -> dict[int, str]:
    """The processes whose parent is ``pid``, with their command lines."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                cmdline = (stat.parent / "cmdline").read_bytes()
                found[int(stat.parent.name)] = cmdline.replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile
    return found


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaps counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def call(
    url: str, body: dict | None = None, token: str | None = None, cookie: str | None = None
) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if cookie:
        req.add_header("Cookie", cookie)
    with urllib.request.urlopen(req, timeout=10) as res:  # noqa: S310 (a local test server)
        return json.loads(res.read())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def console_sign_in(console: str, username: str, password: str) -> str:
    """Sign in through HQ's form as a browser does; the session cookie to send. (The
    cookie is Secure, which a browser sends to 127.0.0.1 and urllib's cookie jar does
    not, so it is carried by hand.)"""
    with urllib.request.urlopen(f"{console}/login", timeout=10) as res:  # noqa: S310
        form_cookie = res.headers["Set-Cookie"].split(";", 1)[0]
        csrf = re.search(r'name="csrf" value="([^"]+)"', res.read().decode()).group(1)
    data = urllib.parse.urlencode({"username": username, "password": password, "csrf": csrf})
    req = urllib.request.Request(f"{console}/login", data=data.encode(), method="POST")
    req.add_header("Cookie", form_cookie)
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirected:
        opener.open(req, timeout=10)
    assert redirected.value.code == 302
    redirected.value.close()
    cookies = redirected.value.headers.get_all("Set-Cookie")
    return next(c.split(";", 1)[0] for c in cookies if c.startswith("hy_session="))


@pytest.fixture(scope="module")
def chain_dir(tmp_path_factory) -> Path:
    """One demo directory for the module: the first test starts the demo afresh (the CA,
    HQ's accounts, both boxes enrolled, six months of history: about 25 s), the others
    restart it there as ``make demo`` does a second time (about 10 s)."""
    return tmp_path_factory.mktemp("chain")


@pytest.fixture
def demo(chain_dir):
    started = Demo(chain_dir)
    yield started
    started.kill()


def assert_all_gone(demo: Demo) -> None:
    # the broker, the fake SMS/WeChat gateways, HQ's ingest worker, API and scheduler, and
    # per store a till and a sync agent
    assert len(demo.children) == 9, "\n".join(demo.children.values())
    left = [demo.children[pid] for pid in demo.children if alive(pid)]
    assert left == []


def test_a_member_sale_opens_no_exception_and_sigterm_stops_every_child(demo):
    till = demo.tills["S001"]
    token = call(f"{till}/session", {"staff_code": "1001", "pin": "1234"})["token"]
    sale = {
        "member": {"card_no": "C0001"},
        "lines": [{"sku": "P0001", "qty": 1}],
        "tenders": [{"kind": "cash", "amount": 100000}],
    }
    call(f"{till}/sales", sale, token)
    wait_until(
        lambda: call(f"{till}/status", token=token)["outbox"]["pending"] == 0,
        30,
        "HQ acks the sale",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        call(f"{demo.hq_api}/exceptions")  # no sign-in: refused
    assert refused.value.code == 401
    refused.value.close()
    cookie = console_sign_in(demo.console, "admin", demo.admin_password)
    assert call(f"{demo.hq_api}/exceptions", cookie=cookie)["exceptions"] == []
    # the history (hq/demo_history.py) is there: six more stores, in their areas; written
    # by a fresh start, kept by a restart
    history = "  history: 6 stores, 183 days" if demo.fresh else "  history: already there"
    assert any(line.startswith(history) for line in demo.banner), demo.banner
    stores = {s["code"]: s for s in call(f"{demo.hq_api}/stores", cookie=cookie)["stores"]}
    assert {code: stores[code]["area"] for code in ("S001", "S003", "S008")} == {
        "S001": "华北",
        "S003": "华东",
        "S008": "华南",
    }
    assert stores["S003"]["acked_through"] > 500
    demo.proc.send_signal(signal.SIGTERM)  # to the demo alone: it is a session of its own
    code, err = demo.finish()
    assert code == 0, err
    assert_all_gone(demo)


def test_the_demo_runs_the_secure_setup_with_boxes_enrolled_through_hq(demo):
    """TLS with client certificates: a client without one is refused at the handshake;
    each store's identity was enrolled through HQ's endpoint (one command each side)."""
    assert demo.broker_url.startswith("mqtts://127.0.0.1:")
    port = int(demo.broker_url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(demo.workdir / "hq" / "ca" / "ca.pem"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.recv(1)
    # campaigns and the member page's codes reach a local fake gateway, configured by
    # URL and credential file as a chain's real one is
    assert "fake SMS gateway at" in (demo.workdir / "fake-gateways.log").read_text()
    api_log = (demo.workdir / "hq-api.log").read_text()
    for code in ("S001", "S002"):
        assert f"store {code} enrolled" in api_log
        pem = (demo.workdir / code / "credentials" / "store.pem").read_bytes()
        cn = x509.load_pem_x509_certificate(pem).subject.rfc4514_string()
        assert cn == f"CN={code}"
    demo.proc.send_signal(signal.SIGTERM)
    code, err = demo.finish()
    assert code == 0, err


def test_sigint_to_the_demo_alone_stops_every_child(demo):
    demo.proc.send_signal(signal.SIGINT)
    code, err = demo.finish()
    assert code == 0, err
    assert_all_gone(demo)


def test_a_child_that_dies_is_named_and_stops_the_demo(demo):
    sync = next(
        pid for pid, args in demo.children.items() if "serve-sync" in args and "S002" in args
    )
    started = time.monotonic()
    os.kill(sync, signal.SIGKILL)
    code, err = demo.finish()
    assert code == 1
    assert "S002-sync exited with code -9" in err
    assert time.monotonic() - started < 30
    assert_all_gone(demo)
