"""Operations tests share HQ's broker fixture; their databases start empty (SQLite and
PostgreSQL): the upgrade tests build an older release's schema in them."""

import pytest

from tests.hq.conftest import mosquitto  # noqa: F401 - fixture


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def hq_db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hq.sqlite3'}"
    return request.getfixturevalue("pg_url")  # empty: not tests/hq's schema template
