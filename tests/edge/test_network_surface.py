"""The till's network surface (docs/operations.md, "The till's network surface"): which
addresses it listens on, which clients it answers, how sign-in guessing is slowed per
address, how sessions end (idle, absolute, or a manager ending them)."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from click.testing import CliRunner

from edge.api import create_app
from edge.cli import main
from edge.config import EdgeConfig, client_allowed, config_problems, load_config, reference_toml
from edge.demo_data import load_demo
from edge.models import StaffSession
from edge.server import TillServer
from edge.services import staff as staff_svc
from edge.services.context import open_till
from tests.broker import free_port
from tests.edge.conftest import make_config, sign_in

# ---- configuration ------------------------------------------------------------------


def test_by_default_the_till_listens_on_loopback_only_and_answers_only_it():
    http = load_config().http
    assert http.listen == ["127.0.0.1"]
    assert http.allow == []
    assert [str(n) for n in http.networks()] == ["127.0.0.0/8", "::1/128"]


@pytest.mark.parametrize(
    ("http", "problem"),
    [
        ({"listen": []}, "http.listen: empty"),
        ({"listen": ["127.0.0.1", "till.local"]}, "http.listen[1]: 'till.local' is not an IP"),
        ({"listen": [8080]}, "http.listen[0]: 8080 is not an IP address"),
        ({"listen": "127.0.0.1"}, "http.listen: '127.0.0.1' should be list"),
        ({"listen": ["127.0.0.1", "127.0.0.1"]}, "http.listen: ['127.0.0.1', '127.0.0.1'] names"),
        ({"allow": ["192.168.1.20/24"]}, "http.allow[0]: '192.168.1.20/24' is not a network"),
        ({"allow": ["10.0.0.0/8", "lan"]}, "http.allow[1]: 'lan' is not a network"),
        ({"allow": [{}]}, "http.allow[0]: {} is not a network"),
        ({"listen": ["192.168.1.20"]}, "http.allow: empty, so no screen could reach"),
        ({"port": 0}, "http.port: 0 out of range"),
        ({"host": "0.0.0.0"}, "http.host: unknown key"),  # noqa: S104 (the old key, refused)
    ],
)
def test_each_bad_http_setting_is_named(http, problem):
    _, problems = config_problems({"http": http})
    assert any(p.startswith(problem) for p in problems), problems


def test_a_store_lan_setting_is_valid():
    cfg, problems = config_problems(
        {
            "http": {
                "listen": ["127.0.0.1", "192.168.1.20", "fd00::20"],
                "allow": ["192.168.1.0/24", "192.168.7.31", "fd00::/64"],
            }
        }
    )
    assert problems == []
    assert "192.168.7.31/32" in [str(n) for n in cfg.http.networks()]


def test_the_reference_config_names_listen_and_allow():
    text = reference_toml()
    assert 'listen = ["127.0.0.1"]' in text and "allow = []" in text


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("192.168.1.31", True),
        ("::ffff:192.168.1.31", True),  # an IPv4 screen reaching an IPv6 socket
        ("192.168.2.31", False),
        ("::ffff:192.168.2.31", False),
        ("fe80::1%eth0", False),
        ("10.0.0.1", False),
        ("localhost", False),
        ("", False),
        (None, False),
    ],
)
def test_which_client_addresses_are_allowed(address, allowed):
    networks = load_config(overrides={"http": {"allow": ["192.168.1.0/24"]}}).http.networks()
    assert client_allowed(address, networks) is allowed


# ---- the door --------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["192.168.5.5", "::ffff:192.168.5.5", "fd00::5"])
def test_a_client_outside_the_allowed_networks_gets_403_on_every_route(client, address):
    for method, path in (
        ("GET", "/api/v1/health"),
        ("GET", "/"),
        ("POST", "/api/v1/session"),
        ("GET", "/api/v1/status"),
        ("GET", "/api/v1/nope"),
    ):
        res = client.open(
            path,
            method=method,
            json={"staff_code": "1001", "pin": "1234"} if method == "POST" else None,
            environ_base={"REMOTE_ADDR": address},
        )
        assert res.status_code == 403, (path, res.json)
        assert res.json["field"] == "client_address"
        assert "不在收银服务允许的网络内" in res.json["message"]
        assert address in res.json["message"]


def test_a_refused_client_is_not_counted_as_a_pin_guesser(client):
    for _ in range(30):
        client.post(
            "/api/v1/session",
            json={"staff_code": "1001", "pin": "0000"},
            environ_base={"REMOTE_ADDR": "192.168.5.5"},
        )
    assert sign_in(client)  # 1001's own count was never touched


@pytest.mark.parametrize("address", ["127.0.0.9", "::1", "10.1.2.3", "::ffff:10.1.2.3"])
def test_loopback_and_the_allowed_networks_are_answered(client, address):
    # tests/edge/conftest.py allows 10.0.0.0/8, the tests' store LAN
    res = client.get("/api/v1/health", environ_base={"REMOTE_ADDR": address})
    assert res.status_code == 200 and res.json["ok"] is True


# ---- real sockets ----------------------------------------------------------------------


@contextmanager
def serving(app, addresses: list[str], port: int) -> Iterator[TillServer]:
    server = TillServer(app, addresses, port, threads=2, grace=2.0)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        thread.join(10)
        assert not thread.is_alive()


def call(
    address: str,
    port: int,
    method: str,
    path: str,
    body: dict | None = None,
    source: str | None = None,
) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection(
        address, port, timeout=10, source_address=(source, 0) if source else None
    )
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        res = conn.getresponse()
        raw = res.read()
        return res.status, dict(res.getheaders()), json.loads(raw) if raw else {}
    finally:
        conn.close()


def test_the_till_listens_on_each_address_named_and_on_no_other(app):
    port = free_port()
    with serving(app, ["127.0.0.1", "127.0.0.2"], port) as server:
        assert server.addresses == [("127.0.0.1", port), ("127.0.0.2", port)]
        for address in ("127.0.0.1", "127.0.0.2"):
            status, _, body = call(address, port, "GET", "/api/v1/health")
            assert (status, body) == (200, {"ok": True, "store": "S001"})
        with pytest.raises(ConnectionRefusedError):
            call("127.0.0.3", port, "GET", "/api/v1/health")
    with pytest.raises(ConnectionRefusedError):  # and stopped, it listens nowhere
        call("127.0.0.2", port, "GET", "/api/v1/health")


def test_with_the_default_config_a_box_s_other_addresses_reach_nothing(app):
    port = free_port()
    with serving(app, EdgeConfig().http.listen, port):
        assert call("127.0.0.1", port, "GET", "/api/v1/health")[0] == 200
        with pytest.raises(ConnectionRefusedError):
            call("127.0.0.2", port, "GET", "/api/v1/health")


@pytest.fixture
def strict_app(tmp_path, clock):
    cfg = make_config(tmp_path, till={"address_max_failures": 3, "address_lockout_minutes": 10})
    till = open_till(cfg, clock=clock, create_key=True)
    load_demo(till, members=2)
    yield create_app(till)
    till.db.close()


def test_wrong_pins_are_counted_per_client_address_over_real_sockets(strict_app, clock):
    port = free_port()
    with serving(strict_app, ["127.0.0.1"], port):
        for code in ("2001", "2002"):
            guess = {"staff_code": code, "pin": "1234"}
            assert call("127.0.0.1", port, "POST", "/api/v1/session", guess, "127.0.0.7")[0] == 403
        # the third wrong PIN from 127.0.0.7 uses its count up, over three codes
        guess = {"staff_code": "2003", "pin": "1234"}
        status, headers, body = call(
            "127.0.0.1", port, "POST", "/api/v1/session", guess, "127.0.0.7"
        )
        assert status == 429, body
        assert headers["Retry-After"] == "600"
        assert "127.0.0.7" in body["message"] and "锁定" in body["message"]
        # locked: even the right PIN, for a code never guessed, from that address
        right = {"staff_code": "1001", "pin": "1234"}
        clock.advance(minutes=4)
        status, headers, _ = call("127.0.0.1", port, "POST", "/api/v1/session", right, "127.0.0.7")
        assert (status, headers["Retry-After"]) == (429, "360")
        # another address of the same box is another client
        assert call("127.0.0.1", port, "POST", "/api/v1/session", right, "127.0.0.8")[0] == 201
        clock.advance(minutes=6)
        assert call("127.0.0.1", port, "POST", "/api/v1/session", right, "127.0.0.7")[0] == 201


def test_an_address_lock_survives_a_restart_of_the_till(tmp_path, clock):
    """The counts are rows in the till's database, not the server's memory: restarting
    the service is no way round a lock."""
    cfg = make_config(tmp_path, till={"address_max_failures": 2, "address_lockout_minutes": 10})
    till = open_till(cfg, clock=clock, create_key=True)
    load_demo(till, members=2)
    client = create_app(till).test_client()
    guesser = {"REMOTE_ADDR": "10.9.9.9"}
    for code in ("2001", "2002"):
        client.post(
            "/api/v1/session", json={"staff_code": code, "pin": "1234"}, environ_base=guesser
        )
    till.db.close()
    again = open_till(cfg, clock=clock)
    client = create_app(again).test_client()
    right = {"staff_code": "1001", "pin": "1234"}
    res = client.post("/api/v1/session", json=right, environ_base=guesser)
    assert res.status_code == 429 and res.headers["Retry-After"] == "600"
    again.db.close()


def test_a_locked_staff_code_says_when_to_try_again(client, clock):
    for _ in range(4):
        assert (
            client.post("/api/v1/session", json={"staff_code": "1001", "pin": "0000"}).status_code
            == 403
        )
    res = client.post("/api/v1/session", json={"staff_code": "1001", "pin": "0000"})
    assert res.status_code == 429
    assert res.headers["Retry-After"] == "300"  # till.pin_lockout_minutes
    clock.advance(minutes=2, seconds=30)
    res = client.post("/api/v1/session", json={"staff_code": "1001", "pin": "1234"})
    assert (res.status_code, res.headers["Retry-After"]) == (429, "150")


# ---- sessions end ------------------------------------------------------------------------


def test_a_session_ends_after_the_idle_limit_without_a_request(client, cashier, clock):
    for _ in range(4):  # busy: each request within 30 minutes of the last keeps it
        clock.advance(minutes=25)
        assert client.get("/api/v1/products", headers=cashier).status_code == 200
    clock.advance(minutes=30, seconds=1)
    res = client.get("/api/v1/products", headers=cashier)
    assert res.status_code == 401
    assert "30 分钟未操作" in res.json["message"] and res.json["field"] == "token"


def test_a_busy_session_still_ends_session_hours_after_sign_in(client, cashier, clock):
    for _ in range(12 * 3):
        clock.advance(minutes=20)
        assert client.get("/api/v1/products", headers=cashier).status_code == 200
    clock.advance(seconds=1)  # 12 hours and a second after sign-in
    res = client.get("/api/v1/products", headers=cashier)
    assert res.status_code == 401
    assert "超过 12 小时" in res.json["message"]


def test_with_no_idle_limit_only_session_hours_end_a_session(tmp_path, clock):
    till = open_till(
        make_config(tmp_path, till={"session_idle_minutes": 0}), clock=clock, create_key=True
    )
    load_demo(till, members=2)
    client = create_app(till).test_client()
    headers = sign_in(client)
    clock.advance(hours=11, minutes=59)
    assert client.get("/api/v1/products", headers=headers).status_code == 200
    clock.advance(minutes=1, seconds=1)
    assert client.get("/api/v1/products", headers=headers).status_code == 401
    till.db.close()


def test_waiting_on_the_card_reader_does_not_keep_a_session_alive(client, cashier, clock):
    """The cashier screen waits on the reader all the time it is signed in: that wait
    needs a live session but is nobody at the till."""
    for _ in range(2):
        clock.advance(minutes=12)
        res = client.get("/api/v1/devices/reader/next?timeout=0", headers=cashier)
        assert res.status_code != 401, res.json  # 503 here: no devices configured
    clock.advance(minutes=7)  # 31 minutes after the last request someone made
    res = client.get("/api/v1/devices/reader/next?timeout=0", headers=cashier)
    assert res.status_code == 401 and "未操作" in res.json["message"]


def test_a_busy_screen_writes_its_session_at_most_once_a_minute(client, cashier, clock):
    def expires() -> str:
        return StaffSession.get().expires_at

    signed_at = expires()
    for _ in range(5):
        clock.advance(seconds=10)
        assert client.get("/api/v1/products", headers=cashier).status_code == 200
    assert expires() == signed_at  # 50 s on: not moved yet
    clock.advance(seconds=10)
    assert client.get("/api/v1/products", headers=cashier).status_code == 200
    assert expires() > signed_at


def test_a_manager_ends_every_session(client, clock):
    cashier, other = sign_in(client), sign_in(client, "1001", "1234")
    manager = sign_in(client, "9001", "9999")
    res = client.post("/api/v1/sessions/end-all", headers=manager)
    assert res.status_code == 200
    assert res.json == {"ended": 3, "staff_code": None}
    for headers in (cashier, other, manager):
        res = client.get("/api/v1/products", headers=headers)
        assert res.status_code == 401
        assert "被店长结束" in res.json["message"]
    assert sign_in(client)  # signing in again works


def test_a_manager_ends_one_staff_member_s_sessions(client):
    cashier, manager = sign_in(client), sign_in(client, "9001", "9999")
    res = client.post("/api/v1/sessions/end-all", headers=manager, json={"staff_code": "1001"})
    assert res.json == {"ended": 1, "staff_code": "1001"}
    assert client.get("/api/v1/products", headers=cashier).status_code == 401
    assert client.get("/api/v1/products", headers=manager).status_code == 200
    res = client.post("/api/v1/sessions/end-all", headers=manager, json={"staff_code": "7777"})
    assert res.status_code == 404 and res.json["field"] == "staff_code"
    res = client.post("/api/v1/sessions/end-all", headers=manager, json={"staff_code": 1001})
    assert res.status_code == 400 and res.json["field"] == "staff_code"


def test_a_cashier_ends_sessions_only_with_a_manager_s_pin(client):
    cashier = sign_in(client)
    res = client.post("/api/v1/sessions/end-all", headers=cashier)
    assert res.status_code == 403 and "店长授权" in res.json["message"]
    wrong = {"manager": {"code": "9001", "pin": "0000"}}
    assert client.post("/api/v1/sessions/end-all", headers=cashier, json=wrong).status_code == 403
    approved = {"manager": {"code": "9001", "pin": "9999"}}
    res = client.post("/api/v1/sessions/end-all", headers=cashier, json=approved)
    assert res.status_code == 200 and res.json["ended"] == 1


def test_end_sessions_from_the_box_s_shell(tmp_path, demo_till):
    staff_svc.sign_in(demo_till, "1001", "1234")
    staff_svc.sign_in(demo_till, "9001", "9999")
    path = tmp_path / "edge.toml"
    path.write_text(
        f'data_dir = "{demo_till.config.data_dir}"\n[security]\nscrypt_n = 1024\n',
        encoding="utf-8",
    )
    run = CliRunner().invoke
    result = run(main, ["-c", str(path), "end-sessions", "--staff", "1001"])
    assert result.exit_code == 0, result.output
    assert "ended 1 sessions" in result.output
    assert [s.staff_code for s in StaffSession.select()] == ["9001"]
    result = run(main, ["-c", str(path), "end-sessions"])
    assert result.exit_code == 0 and "ended 1 sessions" in result.output
    assert StaffSession.select().count() == 0
    result = run(main, ["-c", str(path), "end-sessions", "--staff", "7777"])
    assert result.exit_code == 12 and "7777" in result.output
