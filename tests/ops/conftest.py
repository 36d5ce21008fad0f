"""Operations tests share HQ's database and broker fixtures (SQLite and PostgreSQL)."""

from tests.hq.conftest import hq_db_url, mosquitto  # noqa: F401 - fixtures
