"""HQ fixtures: a database on SQLite and on PostgreSQL, a worker, a store simulator."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from core.rules import DEMO_RULES
from hq.config import HqConfig, MqttSettings
from hq.models import bind, open_database
from hq.rules import publish_rules
from hq.worker import IngestWorker
from tests.broker import Mosquitto, TestPki, running
from tests.hq.edge_sim import EdgeSim


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory, pki: TestPki) -> Iterator[Mosquitto]:
    """The HQ tests' own session broker (their retained messages stay among them)."""
    with running(tmp_path_factory.mktemp("mosquitto-hq"), pki) as broker:
        yield broker


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def hq_db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hq.sqlite3'}"
    # HQ's schema is already there (a copy of the session's template): making it is most
    # of what a fresh database costs a test
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture
def hq_db(hq_db_url):
    db = open_database(hq_db_url)
    # a PostgreSQL database here is a copy of the session's template, schema made
    bind(db, create=not hq_db_url.startswith("postgresql://"))
    publish_rules(db, DEMO_RULES.to_dict())
    yield db
    db.close()


def hq_config(
    db_url: str, broker: Mosquitto | None, client_id: str = "", session_expiry: int = 0
) -> HqConfig:
    """HQ's configuration on ``broker``, as HQ's identity (``None``: a worker that never
    connects, whose client a test replaces with a recording one)."""
    client_id = client_id or f"hq-test-{uuid.uuid4().hex[:8]}"
    if broker is None:
        mqtt = MqttSettings(url="mqtt://127.0.0.1:1", client_id=client_id)
    else:
        mqtt = broker.hq_settings(client_id, session_expiry=session_expiry)
    return HqConfig(
        database_url=db_url,
        mqtt=mqtt,
        state_interval=1.0,
        lookup_key_file=os.environ["HY_HQ_LOOKUP_KEY_FILE"],  # tests/conftest.py
    )


@pytest.fixture
def worker(hq_db, hq_db_url, mosquitto) -> Iterator[IngestWorker]:
    w = IngestWorker(hq_config(hq_db_url, mosquitto), db=hq_db).start()
    yield w
    w.stop()


@pytest.fixture
def store_code() -> str:
    return f"T{uuid.uuid4().hex[:6]}"


@pytest.fixture
def edge(mosquitto, store_code) -> Iterator[EdgeSim]:
    sim = EdgeSim(mosquitto, store_code)
    yield sim
    sim.close()
