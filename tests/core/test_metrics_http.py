"""core.metrics_http: the bearer token, loopback addresses, and the small listener."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.metrics_http import (
    MIN_TOKEN_CHARS,
    MetricsListener,
    bearer_matches,
    is_loopback,
    read_token,
    token_path,
)
from tests.metrics_helpers import fetch

TOKEN = "t" * MIN_TOKEN_CHARS


def hello_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"huiyuan_up 1\n"]


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),  # noqa: S104 - the point of the test
        ("192.168.1.20", False),
        ("::", False),
        ("", False),
        (None, False),
        ("not an address", False),
    ],
)
def test_loopback_addresses(address, loopback):
    assert is_loopback(address) is loopback


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (f"Bearer {TOKEN}", True),
        (f"Bearer  {TOKEN} ", True),
        (f"bearer {TOKEN}", False),
        (f"Basic {TOKEN}", False),
        (f"Bearer {TOKEN}x", False),
        ("Bearer ", False),
        (None, False),
    ],
)
def test_bearer_header(header, ok):
    assert bearer_matches(header, TOKEN) is ok


def test_token_file_named_missing_or_short_is_an_error_not_an_open_door(tmp_path):
    assert read_token(None) is None
    with pytest.raises(ConfigError, match="unreadable"):
        read_token(tmp_path / "absent")
    short = tmp_path / "short"
    short.write_text("x" * (MIN_TOKEN_CHARS - 1))
    with pytest.raises(ConfigError, match="shorter"):
        read_token(short)
    good = tmp_path / "good"
    good.write_text(f"  {TOKEN}\n")
    assert read_token(good) == TOKEN


def test_token_path_prefers_the_configured_file_then_systemd_credential(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert token_path("") is None
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert token_path("") is None  # a credentials directory without the token
    (tmp_path / "metrics-token").write_text(TOKEN)
    assert token_path("") == tmp_path / "metrics-token"
    assert str(token_path("/etc/huiyuan/other")) == "/etc/huiyuan/other"


def test_a_listener_off_loopback_refuses_to_start_without_a_token():
    with pytest.raises(ConfigError, match="needs a token file"):
        MetricsListener(hello_app, "0.0.0.0", 0, None)  # noqa: S104


def test_a_listener_on_loopback_serves_without_a_token():
    listener = MetricsListener(hello_app, "127.0.0.1", 0, None).start()
    try:
        assert fetch(f"http://127.0.0.1:{listener.port}/metrics") == (200, "huiyuan_up 1\n")
    finally:
        listener.stop()


def test_a_listener_with_a_token_answers_only_the_bearer(tmp_path):
    path = tmp_path / "metrics-token"
    path.write_text(TOKEN)
    listener = MetricsListener(hello_app, "0.0.0.0", 0, path).start()  # noqa: S104
    url = f"http://127.0.0.1:{listener.port}/metrics"
    try:
        assert fetch(url)[0] == 401
        assert fetch(url, "wrong-token-wrong-token")[0] == 401
        assert fetch(url, TOKEN) == (200, "huiyuan_up 1\n")
        # the file is read at each request: replacing it rotates the token
        path.write_text("n" * MIN_TOKEN_CHARS)
        assert fetch(url, TOKEN)[0] == 401
        assert fetch(url, "n" * MIN_TOKEN_CHARS)[0] == 200
        path.unlink()  # a token that went missing closes the door
        assert fetch(url)[0] == 503
    finally:
        listener.stop()


def test_a_port_in_use_is_named():
    first = MetricsListener(hello_app, "127.0.0.1", 0, None).start()
    try:
        with pytest.raises(ConfigError, match=f"127.0.0.1:{first.port}"):
            MetricsListener(hello_app, "127.0.0.1", first.port, None).start()
    finally:
        first.stop()
