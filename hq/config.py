"""HQ's one configuration object: database URL, broker connection, API address.

Every field has a default that runs a single shop on this machine; the CLI and
environment (``HY_HQ_DATABASE_URL``, ``HY_MQTT_URL``, ``HY_MQTT_CA``, ``HY_MQTT_CERT``,
``HY_MQTT_KEY``, ``HY_HQ_CA_DIR``) override them. Validated once at start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from urllib.parse import urlparse

from core.errors import ConfigError


@dataclass(frozen=True)
class MqttSettings:
    url: str = field(
        default="mqtt://127.0.0.1:1883", metadata={"doc": "mqtt://host:port or mqtts://host:port"}
    )
    ca: str = field(default="", metadata={"doc": "CA certificate file (PEM) for mqtts"})
    cert: str = field(default="", metadata={"doc": "client certificate file (PEM)"})
    key: str = field(default="", metadata={"doc": "client private key file (PEM)"})
    client_id: str = field(
        default="", metadata={"doc": "stable MQTT client id; empty = hq-<role>-<host>-<pid>"}
    )
    keepalive: int = field(default=30, metadata={"doc": "MQTT keepalive, seconds"})
    # 0 on purpose: in a shared subscription a dead worker's persistent session keeps
    # taking its turn of the group's messages until it expires; the edge resends anyway
    session_expiry: int = field(
        default=0, metadata={"doc": "seconds the broker keeps a worker's session after it goes"}
    )

    @property
    def tls(self) -> bool:
        return urlparse(self.url).scheme == "mqtts"

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parsed = urlparse(self.url)
        return parsed.port or (8883 if self.tls else 1883)

    @property
    def username(self) -> str | None:
        return urlparse(self.url).username

    @property
    def password(self) -> str | None:
        return urlparse(self.url).password

    def validate(self) -> None:
        scheme = urlparse(self.url).scheme
        if scheme not in ("mqtt", "mqtts"):
            raise ConfigError(
                f"mqtt.url must start with mqtt:// or mqtts://, got {self.url!r}", field="mqtt.url"
            )
        if bool(self.cert) != bool(self.key):
            raise ConfigError("mqtt.cert and mqtt.key go together", field="mqtt.cert")
        for name in ("ca", "cert", "key"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise ConfigError(f"mqtt.{name}: no such file {path!r}", field=f"mqtt.{name}")


@dataclass(frozen=True)
class HqConfig:
    database_url: str = field(
        default="sqlite:///var/hq.sqlite3",
        metadata={"doc": "sqlite:///path or postgresql://user@host/db"},
    )
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    api_host: str = field(default="127.0.0.1", metadata={"doc": "HQ API listen address"})
    api_port: int = field(default=8600, metadata={"doc": "HQ API port"})
    state_interval: float = field(
        default=10.0, metadata={"doc": "seconds between HQ online announcements"}
    )
    ca_dir: str = field(
        default="var/ca",
        metadata={
            "doc": "the chain CA's directory (ca.pem; ca.key unless systemd hands it over "
            "as the credential ca.key, see hq/ca.py)"
        },
    )
    store_broker_url: str = field(
        default="",
        metadata={
            "doc": "the broker URL stores connect to (mqtts://host:8883), told to each box "
            "at enrolment (env HY_HQ_STORE_BROKER_URL); empty: not told"
        },
    )

    def validate(self) -> HqConfig:
        scheme = urlparse(self.database_url).scheme
        if scheme not in ("sqlite", "postgres", "postgresql"):
            raise ConfigError(
                f"database_url must be sqlite:/// or postgresql://, got {self.database_url!r}",
                field="database_url",
            )
        self.mqtt.validate()
        return self

    @classmethod
    def from_env(cls, **overrides: object) -> HqConfig:
        env = os.environ
        mqtt = MqttSettings(
            url=env.get("HY_MQTT_URL", MqttSettings.url),
            ca=env.get("HY_MQTT_CA", ""),
            cert=env.get("HY_MQTT_CERT", ""),
            key=env.get("HY_MQTT_KEY", ""),
        )
        config = cls(
            database_url=env.get("HY_HQ_DATABASE_URL", cls.database_url),
            mqtt=mqtt,
            ca_dir=env.get("HY_HQ_CA_DIR", cls.ca_dir),
            store_broker_url=env.get("HY_HQ_STORE_BROKER_URL", ""),
        )
        mqtt_over = {
            k[5:]: v for k, v in overrides.items() if k.startswith("mqtt_") and v not in (None, "")
        }
        top_over = {
            k: v for k, v in overrides.items() if not k.startswith("mqtt_") and v not in (None, "")
        }
        return replace(config, mqtt=replace(config.mqtt, **mqtt_over), **top_over).validate()
