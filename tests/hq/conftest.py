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
from tests.broker import Mosquitto
from tests.hq.edge_sim import EdgeSim


class ClosingMosquitto(Mosquitto):
    """tests.broker.Mosquitto leaves the stderr pipe of a stopped broker open, which
    pytest turns into an unraisable ResourceWarning; close it (to fix in tests/broker.py)."""

    def start(self, timeout: float = 10.0) -> None:
        super().start(timeout)
        self._procs = [*getattr(self, "_procs", []), self.proc]

    def _close_pipes(self) -> None:
        for proc in getattr(self, "_procs", []):
            if proc is not None and proc.poll() is not None and proc.stderr:
                proc.stderr.close()

    def stop(self) -> None:
        super().stop()
        self._close_pipes()

    def kill(self) -> None:
        super().kill()
        self._close_pipes()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    broker = ClosingMosquitto(tmp_path_factory.mktemp("mosquitto-hq"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def own_mosquitto(tmp_path) -> Iterator[Mosquitto]:
    broker = ClosingMosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def hq_db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hq.sqlite3'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def hq_db(hq_db_url):
    db = open_database(hq_db_url)
    bind(db)
    publish_rules(db, DEMO_RULES.to_dict())
    yield db
    db.close()


def hq_config(
    db_url: str, broker_url: str, client_id: str = "", session_expiry: int = 0
) -> HqConfig:
    return HqConfig(
        database_url=db_url,
        mqtt=MqttSettings(
            url=broker_url,
            client_id=client_id or f"hq-test-{uuid.uuid4().hex[:8]}",
            session_expiry=session_expiry,
        ),
        state_interval=1.0,
        lookup_key_file=os.environ["HY_HQ_LOOKUP_KEY_FILE"],  # tests/conftest.py
    )


@pytest.fixture
def worker(hq_db, hq_db_url, mosquitto) -> Iterator[IngestWorker]:
    w = IngestWorker(hq_config(hq_db_url, mosquitto.url), db=hq_db).start()
    yield w
    w.stop()


@pytest.fixture
def store_code() -> str:
    return f"T{uuid.uuid4().hex[:6]}"


@pytest.fixture
def edge(mosquitto, store_code) -> Iterator[EdgeSim]:
    sim = EdgeSim(mosquitto.url, store_code)
    yield sim
    sim.close()
