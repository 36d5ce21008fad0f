"""HQ reads its secrets from systemd credentials ($CREDENTIALS_DIRECTORY), not the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import ConfigError
from hq.config import HqConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def credentials(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "credentials"
    directory.mkdir()
    for name in ("HY_HQ_DATABASE_URL", "HY_MQTT_CA", "HY_MQTT_CERT", "HY_MQTT_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(directory))
    return directory


def test_the_database_url_comes_from_the_database_url_credential(credentials):
    (credentials / "database-url").write_text("postgresql://hq:s3cret@db.internal/hq\n")
    assert HqConfig.from_env().database_url == "postgresql://hq:s3cret@db.internal/hq"


def test_the_environment_still_wins_where_it_is_set(credentials, monkeypatch):
    (credentials / "database-url").write_text("postgresql://hq:s3cret@db.internal/hq\n")
    monkeypatch.setenv("HY_HQ_DATABASE_URL", "sqlite:///var/other.sqlite3")
    assert HqConfig.from_env().database_url == "sqlite:///var/other.sqlite3"


def test_without_credentials_the_defaults_run_one_shop(monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("HY_HQ_DATABASE_URL", raising=False)
    assert HqConfig.from_env().database_url == HqConfig.database_url


def test_hq_mqtt_identity_comes_from_the_mqtt_credentials(credentials):
    for name in ("mqtt-ca.pem", "mqtt-cert.pem", "mqtt-key.pem"):
        (credentials / name).write_text("-----BEGIN TEST-----\n")
    mqtt = HqConfig.from_env().mqtt
    assert (mqtt.ca, mqtt.cert, mqtt.key) == tuple(
        str(credentials / n) for n in ("mqtt-ca.pem", "mqtt-cert.pem", "mqtt-key.pem")
    )


def test_a_bad_database_url_is_refused_without_showing_its_password(credentials):
    (credentials / "database-url").write_text("mysql://hq:s3cret@db.internal/hq\n")
    with pytest.raises(ConfigError) as caught:
        HqConfig.from_env()
    assert "s3cret" not in caught.value.message and "mysql" in caught.value.message


def test_init_db_under_systemd_reads_the_credential(tmp_path, credentials):
    db = tmp_path / "hq.sqlite3"
    (credentials / "database-url").write_text(f"sqlite:///{db}\n")
    env = {"CREDENTIALS_DIRECTORY": str(credentials), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "hq.cli", "init-db"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert db.exists()
