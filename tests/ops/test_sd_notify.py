"""core/systemd.py against a real unix datagram socket, and the services that feed it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.systemd import BusyGuard, LoopPulse, Notifier, Watchdog
from edge.health import database_answers
from edge.models import open_database
from tests.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0  # seconds a test waits for a message that must come (a failure, not a timing)


class NotifySocket:
    """What systemd listens on: a unix datagram socket, by path or abstract name."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + address[1:].encode() if address.startswith("@") else address)
        self.sock.settimeout(WAIT)

    def next(self) -> str:
        return self.sock.recv(4096).decode()

    def until(self, line: str) -> list[str]:
        """Messages up to and including the first that has ``line``."""
        seen = []
        while True:
            message = self.next()
            seen.append(message)
            if line in message.split("\n"):
                return seen

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request, tmp_path) -> Iterator[NotifySocket]:
    if request.param == "path":
        address = str(tmp_path / "notify")
    else:
        address = f"@huiyuan-test-{uuid.uuid4().hex}"
    sock = NotifySocket(address)
    yield sock
    sock.close()


def test_ready_stopping_and_status_arrive_as_datagrams(notify_socket):
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.address})
    assert notifier.enabled
    assert notifier.ready("serving 127.0.0.1:8080")
    assert notify_socket.next() == "READY=1\nSTATUS=serving 127.0.0.1:8080"
    assert notifier.ping() and notify_socket.next() == "WATCHDOG=1"
    assert notifier.stopping() and notify_socket.next() == "STOPPING=1"


def test_outside_systemd_nothing_is_sent_and_nothing_fails():
    notifier = Notifier({})
    assert not notifier.enabled and not notifier.ready() and not notifier.ping()
    assert Watchdog(notifier, [lambda: True], interval=0.01).start().thread is None


def test_the_watchdog_interval_is_read_for_this_process_only():
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval == 30.0
    mine = {"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(mine).watchdog_interval == 5.0
    assert Notifier({**mine, "WATCHDOG_PID": str(os.getpid() + 1)}).watchdog_interval is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval is None


def test_a_socket_that_is_gone_does_not_stop_the_service(tmp_path):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert notifier.enabled and notifier.ping() is False


class CountedCheck:
    """Wraps a check; lets the test wait until the watchdog has looked ``n`` more times."""

    def __init__(self, check) -> None:  # noqa: ANN001
        self.check = check
        self.looks = 0
        self.cond = threading.Condition()
        self.__name__ = getattr(check, "__name__", "check")

    def __call__(self) -> bool:
        with self.cond:
            self.looks += 1
            self.cond.notify_all()
        return self.check()

    def wait_looks(self, n: int) -> None:
        with self.cond:
            target = self.looks + n
            assert self.cond.wait_for(lambda: self.looks >= target, WAIT)


def test_the_watchdog_is_fed_while_the_loop_goes_round_and_not_when_it_is_wedged(
    notify_socket,
):
    pulse = LoopPulse()
    running = threading.Event()
    running.set()
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            running.wait()  # cleared: the loop is wedged
            pulse.tick()
            stop.wait(0.001)

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    check = CountedCheck(pulse.advanced)
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.address})
    watchdog = Watchdog(notifier, [check], interval=0.02).start()
    try:
        for _ in range(3):
            assert notify_socket.next() == "WATCHDOG=1"

        running.clear()  # wedge the loop
        check.wait_looks(2)  # one look may still see the last rounds; the next cannot
        pings = watchdog.pings
        check.wait_looks(3)
        assert watchdog.pings == pings  # three looks at a wedged loop, no ping

        running.set()
        check.wait_looks(2)
        assert watchdog.pings > pings
    finally:
        stop.set()
        running.set()
        watchdog.stop()
    assert notify_socket.until("STOPPING=1")[-1] == "STOPPING=1"


def test_a_check_that_raises_is_a_failing_check():
    def broken() -> bool:
        raise OSError("disk gone")

    assert not Watchdog(Notifier({}), [lambda: True, broken]).healthy()
    assert Watchdog(Notifier({}), [lambda: True]).healthy()


def test_busy_guard_shows_a_handler_stuck_past_its_limit():
    now = [100.0]
    guard = BusyGuard(clock=lambda: now[0])
    assert guard.busy_for() == 0.0
    with guard:
        now[0] += 31.0
        assert guard.busy_for() == 31.0
    assert guard.busy_for() == 0.0


def test_the_till_database_check_fails_when_the_file_cannot_be_read(tmp_path):
    db = open_database(tmp_path / "edge.sqlite3")
    check = database_answers(db)
    assert check()
    db.close()
    (tmp_path / "edge.sqlite3").write_bytes(b"not a database" * 512)
    with pytest.raises(Exception, match="not a database|file is not"):
        check()


def test_the_ingest_worker_is_unhealthy_while_a_message_is_stuck():
    from hq.config import HqConfig
    from hq.worker import STUCK_AFTER_S, IngestWorker

    worker = IngestWorker(HqConfig())
    heartbeat_alive, no_handler_stuck = worker.health_checks()
    assert not heartbeat_alive()  # not started
    now = [0.0]
    worker.busy = BusyGuard(clock=lambda: now[0])
    assert no_handler_stuck()
    with worker.busy:
        now[0] += STUCK_AFTER_S
        assert not no_handler_stuck()
    assert no_handler_stuck()


# ---- the real services, as systemd starts them -------------------------------------


def start_service(args: list[str], notify: NotifySocket, **env: str) -> subprocess.Popen:
    environ = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NOTIFY_SOCKET": notify.address,
        "WATCHDOG_USEC": "200000",  # WatchdogSec=0.2: a ping at least every 0.1 s
        **env,
    }
    environ.pop("WATCHDOG_PID", None)
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop_service(
    proc: subprocess.Popen, notify: NotifySocket, signum: int = signal.SIGTERM
) -> None:
    """Stop as systemd does; the service says STOPPING=1 and exits 0."""
    try:
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signum)
        assert notify.until("STOPPING=1")
        assert proc.wait(timeout=WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def edge_config(tmp_path: Path, extra: str = "") -> Path:
    toml = tmp_path / "edge.toml"
    toml.write_text(
        f'data_dir = "{tmp_path / "edge"}"\n[http]\nport = {free_port()}\n'
        f"[security]\nscrypt_n = 1024\n{extra}",
        encoding="utf-8",
    )
    return toml


def test_the_till_says_ready_feeds_the_watchdog_and_says_stopping(tmp_path, notify_socket):
    toml = edge_config(tmp_path)
    proc = start_service(["-m", "edge.cli", "-c", str(toml), "serve"], notify_socket)
    try:
        assert notify_socket.until("READY=1")[-1].startswith("READY=1\nSTATUS=serving")
        assert notify_socket.until("WATCHDOG=1") and notify_socket.until("WATCHDOG=1")
    finally:
        stop_service(proc, notify_socket)


def test_the_sync_agent_says_ready_and_feeds_the_watchdog(tmp_path, notify_socket, mosquitto):
    tls = "".join(f'{k} = "{v}"\n' for k, v in mosquitto.tls_args("S001").items())
    toml = edge_config(tmp_path, f'[sync]\nbroker_url = "{mosquitto.url}"\n{tls}')  # S001: default
    proc = start_service(["-m", "edge.cli", "-c", str(toml), "serve-sync"], notify_socket)
    try:
        assert notify_socket.until("READY=1")
        assert notify_socket.until("WATCHDOG=1") and notify_socket.until("WATCHDOG=1")
    finally:
        stop_service(proc, notify_socket)


def test_the_ingest_worker_says_ready_and_feeds_the_watchdog(tmp_path, notify_socket, mosquitto):
    url = f"sqlite:///{tmp_path / 'hq.sqlite3'}"
    hq = [sys.executable, "-m", "hq.cli", "--database-url", url, *mosquitto.cli_args("hq")]
    subprocess.run([*hq, "init-db"], cwd=ROOT, check=True, capture_output=True)
    proc = start_service(
        ["-m", "hq.cli", "--database-url", url, *mosquitto.cli_args("hq"), "serve-ingest"],
        notify_socket,
    )
    try:
        assert notify_socket.until("READY=1")
        assert notify_socket.until("WATCHDOG=1") and notify_socket.until("WATCHDOG=1")
    finally:
        stop_service(proc, notify_socket)


def test_the_hq_api_says_ready_and_feeds_the_watchdog(tmp_path, notify_socket):
    url = f"sqlite:///{tmp_path / 'hq.sqlite3'}"
    hq = [sys.executable, "-m", "hq.cli", "--database-url", url]
    subprocess.run([*hq, "init-db"], cwd=ROOT, check=True, capture_output=True)
    proc = start_service(
        ["-m", "hq.cli", "--database-url", url, "serve-api", "--port", str(free_port())],
        notify_socket,
    )
    try:
        assert notify_socket.until("READY=1")
        assert notify_socket.until("WATCHDOG=1") and notify_socket.until("WATCHDOG=1")
    finally:
        stop_service(proc, notify_socket, signal.SIGINT)  # waitress stops on SIGINT
