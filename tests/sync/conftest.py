"""Sync fixtures: brokers that close their pipes, HQ on SQLite and PostgreSQL, stores."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from hq.worker import IngestWorker
from tests.broker import Mosquitto, TestPki, running
from tests.hq.conftest import hq_config
from tests.sync.helpers import HqProcess, StoreBox, init_hq


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory, pki: TestPki) -> Iterator[Mosquitto]:
    """The sync tests' own session broker (their retained messages stay among them)."""
    with running(tmp_path_factory.mktemp("mosquitto-sync"), pki) as broker:
        yield broker


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def hq_db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hq.sqlite3'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def sqlite_hq_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'hq.sqlite3'}"


def start_worker(db_url: str, broker: Mosquitto) -> IngestWorker:
    db = init_hq(db_url)
    return IngestWorker(hq_config(db_url, broker), db=db).start()


@pytest.fixture
def stores(tmp_path) -> Iterator[list[StoreBox]]:
    made: list[StoreBox] = []
    yield made
    for store in made:
        store.close()


@pytest.fixture
def hq_processes() -> Iterator[list[HqProcess]]:
    made: list[HqProcess] = []
    yield made
    for proc in made:
        proc.stop()


def new_code(prefix: str = "S") -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"
