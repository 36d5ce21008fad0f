"""Shared fixtures: the test CA, a private secure Mosquitto per session, fresh PostgreSQL
databases."""

from __future__ import annotations

import os
import queue
import threading
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


def _new_database(admin, template: str | None = None) -> str:
    """A database of a fresh name (a copy of ``template`` when given); returns the name."""
    name = f"hy_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def _drop_database(admin, name: str) -> None:
    with admin.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _pg_database_url(name: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A brand-new, empty PostgreSQL database for one test, dropped afterwards."""
    admin = _pg_admin()
    name = _new_database(admin)
    try:
        yield _pg_database_url(name)
    finally:
        _drop_database(admin, name)
        admin.close()


@pytest.fixture(scope="session")
def _hq_schema_template() -> Iterator[str]:
    """A database holding HQ's schema as this tree makes it (``hq.models.bind``), made once
    per session, for ``pg_schema_url`` to copy."""
    from hq.models import bind, open_database

    admin = _pg_admin()
    name = _new_database(admin)
    try:
        db = open_database(_pg_database_url(name))
        bind(db)
        db.close()
        yield name
    finally:
        _drop_database(admin, name)
        admin.close()


class _Copies:
    """Copies of the session's HQ schema template made ahead of the tests that take them,
    and dropped after them, by one thread on its own connection: CREATE DATABASE ...
    TEMPLATE takes about 0.3 s here and the drop 0.1 s, which the next test no longer
    waits for (PostgreSQL works on them while a test runs). At most ``AHEAD`` wait."""

    AHEAD = 2

    def __init__(self, template: str) -> None:
        self.template = template
        self.ready: queue.Queue[str | BaseException] = queue.Queue(maxsize=self.AHEAD)
        self.used: queue.Queue[str] = queue.Queue()
        self.stopping = threading.Event()
        self.admin = _pg_admin()  # here, so a missing server skips or fails in the test
        self.thread = threading.Thread(target=self._run, name="pg-schema-copies", daemon=True)
        self.thread.start()

    def _drop_used(self) -> None:
        while True:
            try:
                name = self.used.get_nowait()
            except queue.Empty:
                return
            _drop_database(self.admin, name)

    def _run(self) -> None:
        made: str | None = None
        try:
            while not self.stopping.is_set():
                self._drop_used()
                if made is None:
                    made = _new_database(self.admin, self.template)
                try:
                    self.ready.put(made, timeout=0.05)
                    made = None
                except queue.Full:
                    continue
        except BaseException as exc:  # handed to the test that asks next, which fails
            self.ready.put(exc)
        finally:
            if made is not None:
                _drop_database(self.admin, made)

    def take(self) -> str:
        got = self.ready.get(timeout=120)
        if isinstance(got, BaseException):
            raise RuntimeError(f"could not copy the HQ schema template: {got}") from got
        return got

    def give_back(self, name: str) -> None:
        self.used.put(name)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=60)
        while True:
            try:
                left = self.ready.get_nowait()
            except queue.Empty:
                break
            if isinstance(left, str):
                self.used.put(left)
        self._drop_used()
        self.admin.close()


@pytest.fixture(scope="session")
def _hq_schema_copies(_hq_schema_template: str) -> Iterator[_Copies]:
    copies = _Copies(_hq_schema_template)
    try:
        yield copies
    finally:
        copies.close()


@pytest.fixture
def pg_schema_url(_hq_schema_copies: _Copies) -> Iterator[str]:
    """A PostgreSQL database for one test with HQ's schema already made: a copy of the
    session's template (CREATE DATABASE ... TEMPLATE copies files, where making the schema
    runs some hundred statements), made ahead and dropped afterwards (``_Copies``). Tests
    of ``init-db`` and upgrades take ``pg_url``, an empty one."""
    name = _hq_schema_copies.take()
    try:
        yield _pg_database_url(name)
    finally:
        _hq_schema_copies.give_back(name)
