"""Shared fixtures: the test CA, a private secure Mosquitto per session, fresh PostgreSQL
databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.broker import Mosquitto, TestPki, running

PG_ADMIN_DSN = os.environ.get("HY_TEST_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")


@pytest.fixture(scope="session", autouse=True)
def chain_lookup_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One chain lookup key file for the session, named in the environment so that every
    HQ of a test (in process or started as a command, on SQLite or PostgreSQL) reads it."""
    path = str(tmp_path_factory.mktemp("hq-keys") / "lookup.key")
    before = os.environ.get("HY_HQ_LOOKUP_KEY_FILE")
    os.environ["HY_HQ_LOOKUP_KEY_FILE"] = path
    yield path
    if before is None:
        os.environ.pop("HY_HQ_LOOKUP_KEY_FILE", None)
    else:
        os.environ["HY_HQ_LOOKUP_KEY_FILE"] = before


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """The test session's chain CA: identities on demand, one CRL for its brokers."""
    return TestPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory, pki: TestPki) -> Iterator[Mosquitto]:
    """One real broker for the test session, as broker-config writes it: TLS, client
    certificates, the ACL (tests use their own store codes)."""
    with running(tmp_path_factory.mktemp("mosquitto"), pki) as broker:
        yield broker


@pytest.fixture
def own_mosquitto(tmp_path, pki: TestPki) -> Iterator[Mosquitto]:
    """A broker of the test's own, for tests that reload, stop, kill or restart it."""
    with running(tmp_path / "mosquitto", pki) as broker:
        yield broker


def _pg_admin():
    try:
        import psycopg2
    except ImportError as exc:  # pragma: no cover - depends on the machine
        if os.environ.get("CI"):
            raise
        pytest.skip(f"psycopg2 not installed: {exc}")
    try:
        conn = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=3)
    except Exception as exc:
        if os.environ.get("CI"):
            raise RuntimeError(f"PostgreSQL is required in CI and unreachable: {exc}") from exc
        pytest.skip(f"PostgreSQL unreachable ({exc}); set CI=1 to make this a failure")
    conn.autocommit = True
    return conn


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A brand-new PostgreSQL database for one test, dropped afterwards."""
    admin = _pg_admin()
    name = f"hy_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()
