"""``huiyuan-edge serve`` stops cleanly on SIGTERM (systemd) and SIGINT (Ctrl-C): the request
in flight is answered, the WAL checkpointer stops and its counts file is removed, and the
process exits 0 (no click ``Aborted!``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.broker import free_port
from tests.edge.conftest import demo_store_cli


def _post(url: str, body: dict, headers: dict | None = None) -> dict:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(req, timeout=5) as res:  # noqa: S310 - a local test server
        return json.loads(res.read())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_finishes_the_request_in_flight_and_stops_the_checkpointer(tmp_path, signum):
    port = free_port()
    cli = demo_store_cli(tmp_path, port, members=2)
    temp = tmp_path / "tmp"  # where the checkpointer's counts file goes (tempfile honours TMPDIR)
    temp.mkdir()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [*cli, "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TMPDIR": str(temp)},
            start_new_session=True,  # the signal reaches the server alone
        )
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                token = _post(f"{base}/session", {"staff_code": "1001", "pin": "1234"})["token"]
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
        assert len(list(temp.glob("hy-wal-checkpointer-*"))) == 1
        body = json.dumps(
            {
                "member": {"card_no": "C0001"},
                "lines": [{"sku": "P0001"}],
                "tenders": [{"kind": "cash", "amount": 100000}],
            }
        ).encode()
        head = (
            f"POST /api/v1/sales HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(head + body[:20])  # a request in flight: half its body has arrived
            time.sleep(0.3)
            server.send_signal(signum)
            time.sleep(1.5)  # the server has seen the signal and stopped accepting
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            conn.sendall(body[20:])
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = conn.recv(65536)
                assert chunk, f"connection closed without an answer: {answer!r}"
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
        assert server.wait(timeout=20) == 0, log_path.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
    output = log_path.read_text()
    assert "Aborted!" not in output
    assert "till API stopped" in output
    assert list(temp.glob("hy-wal-checkpointer-*")) == []  # stopped, its counts file removed


def test_ctrl_c_in_the_demo_store_stops_it_with_status_0(tmp_path):
    """``make demo-store`` runs ``python -m edge.demo``; Ctrl-C reaches its whole group. A
    second Ctrl-C while the first one's shutdown runs used to raise KeyboardInterrupt
    there: click's ``Aborted!``, status 1 (and ``make: *** Error 1``)."""
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "edge.demo", "--dir", str(tmp_path / "demo"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).close()  # noqa: S310
                break
            except (urllib.error.URLError, ConnectionError):
                assert demo.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        os.killpg(demo.pid, signal.SIGINT)
        time.sleep(0.05)
        os.killpg(demo.pid, signal.SIGINT)
        output = demo.communicate(timeout=20)[0].decode()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate(timeout=10)
    assert demo.returncode == 0, output
    assert "Aborted!" not in output
    assert "till API stopped" in output


_EXITING = """
import os, signal, subprocess, sys, threading, time
from edge.server import ignore_signals_from_now, stop_on_signals
stop_on_signals(threading.Event())
if sys.argv[1] == "ignore":
    ignore_signals_from_now()
pounder = (
    "import os, signal, time\\n"
    f"for _ in range(3000):\\n    os.kill({os.getpid()}, signal.SIGINT)\\n    time.sleep(0.0001)"
)
subprocess.Popen([sys.executable, "-c", pounder], start_new_session=True)
time.sleep(0.1)
sys.exit(0)
"""


@pytest.mark.parametrize("mode", ["ignore", "handler"])
def test_a_ctrl_c_while_the_interpreter_exits_does_not_kill_the_process(tmp_path, mode):
    """Why the demo store once ended with status -2 though its shutdown had run: the
    interpreter's own shutdown puts a Python-handled SIGINT back to its default, so a
    second Ctrl-C landing then kills the process. ``ignore_signals_from_now`` (called once
    the shutdown is done) keeps it at 0; with our handler alone, SIGINTs pounding the
    exiting process kill it (the case this guards against, shown to happen here)."""
    script = tmp_path / "exiting.py"
    script.write_text(_EXITING, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script), mode],
        capture_output=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    if mode == "ignore":
        assert proc.returncode == 0, proc.stderr.decode()
    else:
        assert proc.returncode == -signal.SIGINT
