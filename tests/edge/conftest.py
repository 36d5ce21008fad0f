"""Edge fixtures: a till on a temporary database, with a clock tests control."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from edge.api import create_app
from edge.config import load_config
from edge.demo_data import load_demo
from edge.services.context import Till, open_till

CN = dt.timezone(dt.timedelta(hours=8))


class Clock:
    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += dt.timedelta(**kwargs)


@pytest.fixture
def clock() -> Clock:
    return Clock(dt.datetime(2026, 11, 23, 10, 0, 0, tzinfo=CN))  # a Monday


# the tests' stores opt into floor_limit offline (the default is online_only)
OFFLINE_FLOOR = {
    "stored_value": {"mode": "floor_limit", "daily_limit": 20000},
    "points": {"mode": "floor_limit", "daily_limit": 5000},
}


def make_config(tmp_path, **overrides):
    base = {
        "data_dir": str(tmp_path / "edge"),
        "security": {"scrypt_n": 1024},
        "offline": OFFLINE_FLOOR,
        # the tests' screens on the store's LAN, e.g. the PIN guessers from 10.0.x.x
        # (tests/edge/test_pin_guessing.py); loopback is always allowed
        "http": {"allow": ["10.0.0.0/8"]},
    }
    for key, value in overrides.items():
        base[key] = {**base[key], **value} if key == "offline" else value
    return load_config(overrides=base)


@pytest.fixture
def till(tmp_path, clock) -> Iterator[Till]:
    t = open_till(make_config(tmp_path), clock=clock, create_key=True)
    yield t
    t.db.close()


@pytest.fixture
def demo_till(till) -> Till:
    load_demo(till, members=20)
    return till


@pytest.fixture
def app(demo_till):
    return create_app(demo_till)


@pytest.fixture
def client(app):
    return app.test_client()


def sign_in(client, code="1001", pin="1234") -> dict[str, str]:
    res = client.post("/api/v1/session", json={"staff_code": code, "pin": pin})
    assert res.status_code == 201, res.json
    return {"Authorization": f"Bearer {res.json['token']}"}


@pytest.fixture
def cashier(client) -> dict[str, str]:
    return sign_in(client)


@pytest.fixture
def manager(client) -> dict[str, str]:
    return sign_in(client, "9001", "9999")


def demo_store_cli(tmp_path, port: int, members: int) -> list[str]:
    """``python -m edge.cli -c <config>`` for a store holding demo data, its till API on
    ``port``: for tests that run the real server process."""
    import subprocess
    import sys

    cfg_path = tmp_path / "edge.toml"
    cfg_path.write_text(
        f'data_dir = "{tmp_path / "edge"}"\n[security]\nscrypt_n = 1024\n[http]\nport = {port}\n',
        encoding="utf-8",
    )
    cli = [sys.executable, "-m", "edge.cli", "-c", str(cfg_path)]
    subprocess.run(
        [*cli, "demo-data", "--members", str(members)], check=True, capture_output=True, timeout=60
    )
    return cli
