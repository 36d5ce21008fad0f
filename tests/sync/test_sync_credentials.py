"""The MQTT CA, certificate and key reach the sync agent and the till as the member key
does: from ``$CREDENTIALS_DIRECTORY`` (systemd's ``LoadCredential=``) when ``[sync]`` names
no path."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from edge.sync.config import CREDENTIAL_FILES, SyncConfig

ROOT = Path(__file__).resolve().parents[2]
TLS = {"broker_url": "mqtts://mqtt.example-chain.cn:8883"}


@pytest.fixture
def credentials(tmp_path, monkeypatch) -> Path:
    creds = tmp_path / "credentials"
    creds.mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    return creds


def test_tls_files_come_from_the_credentials_directory(credentials):
    for file in CREDENTIAL_FILES.values():
        (credentials / file).write_text("PEM")
    cfg = SyncConfig.from_dict(TLS)
    assert (cfg.ca, cfg.cert, cfg.key) == (
        str(credentials / "mqtt-ca.pem"),
        str(credentials / "mqtt-cert.pem"),
        str(credentials / "mqtt-key.pem"),
    )


def test_a_path_in_the_config_wins_and_absent_credentials_stay_empty(credentials, tmp_path):
    (credentials / "mqtt-ca.pem").write_text("PEM")
    own_ca = tmp_path / "ca.pem"
    own_ca.write_text("PEM")
    assert SyncConfig.from_dict({**TLS, "ca": str(own_ca)}).ca == str(own_ca)
    only_ca = SyncConfig.from_dict(TLS)
    assert (only_ca.ca, only_ca.cert, only_ca.key) == (str(credentials / "mqtt-ca.pem"), "", "")


def test_a_certificate_without_its_key_is_refused_by_name(credentials):
    (credentials / "mqtt-cert.pem").write_text("PEM")
    with pytest.raises(ConfigError, match="sync.cert: cert and key go together"):
        SyncConfig.from_dict(TLS)


def test_without_a_credentials_directory_nothing_changes(monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    cfg = SyncConfig.from_dict(TLS)
    assert (cfg.ca, cfg.cert, cfg.key) == ("", "", "")


@pytest.mark.parametrize("unit", ["huiyuan-edge-sync.service", "huiyuan-edge.service"])
def test_both_edge_units_load_the_mqtt_credentials_the_config_reads(unit):
    """The sync agent and the till (its online authorizer) both connect to the broker."""
    text = (ROOT / "systemd" / unit).read_text()
    loaded = {
        line.split("=", 1)[1].split(":", 1)[0]
        for line in text.splitlines()
        if line.startswith("LoadCredential=")
    }
    assert {"member.key", *CREDENTIAL_FILES.values()} <= loaded
