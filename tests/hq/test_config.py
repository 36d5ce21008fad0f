"""HQ configuration: database and broker URLs, TLS settings."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.errors import ConfigError
from hq.config import HqConfig, MqttSettings
from hq.models import open_database
from hq.mqtt import make_client


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hy-test-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "ca.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


@pytest.mark.parametrize(
    ("url", "tls", "host", "port"),
    [
        ("mqtt://broker.example:1884", False, "broker.example", 1884),
        ("mqtt://10.0.0.1", False, "10.0.0.1", 1883),
        ("mqtts://hq.example", True, "hq.example", 8883),
    ],
)
def test_mqtt_url(url, tls, host, port):
    s = MqttSettings(url=url)
    s.validate()
    assert (s.tls, s.host, s.port) == (tls, host, port)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        (MqttSettings(url="tcp://x"), "mqtt.url"),
        (MqttSettings(url="mqtts://x", cert="/nope.pem", key="/nope.key"), "mqtt.cert"),
        (MqttSettings(url="mqtts://x", cert="/nope.pem"), "mqtt.cert"),
        (MqttSettings(url="mqtts://x", ca="/nope-ca.pem"), "mqtt.ca"),
    ],
)
def test_bad_mqtt_settings(settings, field):
    with pytest.raises(ConfigError) as info:
        settings.validate()
    assert info.value.field == field


def test_tls_client_loads_ca_cert_and_key(tmp_path):
    cert, key = self_signed(tmp_path)
    settings = MqttSettings(url="mqtts://hq.example", ca=cert, cert=cert, key=key, client_id="x")
    settings.validate()
    client = make_client(settings, "test")
    assert client._ssl  # TLS configured before connecting


def test_config_from_env(monkeypatch):
    monkeypatch.setenv("HY_HQ_DATABASE_URL", "postgresql://u@db/hq")
    monkeypatch.setenv("HY_MQTT_URL", "mqtt://b:1999")
    config = HqConfig.from_env(mqtt_client_id="w1")
    assert config.database_url == "postgresql://u@db/hq"
    assert (config.mqtt.port, config.mqtt.client_id) == (1999, "w1")
    with pytest.raises(ConfigError):
        HqConfig.from_env(database_url="mysql://x/y")


def test_open_database_refuses_unknown_scheme():
    with pytest.raises(ConfigError):
        open_database("oracle://x/y")
