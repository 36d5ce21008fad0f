"""The edge's ``[sync]`` section: how the sync agent and the till's authorizer reach HQ."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from core.credentials import credential_path
from core.errors import ConfigError
from core.protocol import AUTH_TIMEOUT_S, MAX_BATCH_ITEMS

# The names under which systemd's LoadCredential= hands the MQTT TLS files to the sync
# agent and the till (systemd/huiyuan-edge*.service); used when [sync] names no path.
CREDENTIAL_FILES = {"ca": "mqtt-ca.pem", "cert": "mqtt-cert.pem", "key": "mqtt-key.pem"}


@dataclass(frozen=True)
class SyncConfig:
    broker_url: str = field(
        default="mqtt://127.0.0.1:1883", metadata={"doc": "mqtt://host:port or mqtts://host:port"}
    )
    ca: str = field(
        default="",
        metadata={
            "doc": "CA certificate (PEM) for mqtts; default $CREDENTIALS_DIRECTORY/mqtt-ca.pem"
        },
    )
    cert: str = field(
        default="",
        metadata={
            "doc": "this store's client certificate (PEM); "
            "default $CREDENTIALS_DIRECTORY/mqtt-cert.pem"
        },
    )
    key: str = field(
        default="",
        metadata={
            "doc": "this store's client private key (PEM); default $CREDENTIALS_DIRECTORY/mqtt-key.pem"
        },
    )
    batch_size: int = field(default=200, metadata={"doc": "outbox items per published batch"})
    window: int = field(default=8, metadata={"doc": "batches in flight before waiting for acks"})
    ack_timeout: float = field(
        default=5.0, metadata={"doc": "seconds without an ack before resending (doubles to 60)"}
    )
    auth_timeout: float = field(
        default=AUTH_TIMEOUT_S,
        metadata={"doc": "hard limit, seconds, on an online spend authorization"},
    )
    keepalive: int = field(default=30, metadata={"doc": "MQTT keepalive, seconds"})
    session_expiry: int = field(
        default=7 * 86400, metadata={"doc": "broker keeps our session (queued acks) this long, s"}
    )
    page_size: int = field(default=500, metadata={"doc": "change records asked for per page"})
    snapshot_timeout: float = field(
        default=60.0, metadata={"doc": "seconds after the last snapshot chunk before asking again"}
    )
    keep_registered_phones_hours: float = field(
        default=48.0,
        metadata={
            "doc": "hours a registration's phone stays (encrypted) after HQ acknowledged it, "
            "so a resend to an HQ restored from a backup still has it; at least the time "
            "between HQ backups"
        },
    )
    digest_interval: float = field(
        default=600.0,
        metadata={"doc": "seconds between balance digests sent to HQ (0: only when HQ asks)"},
    )
    renew_days: int = field(
        default=30,
        metadata={"doc": "ask HQ for a new certificate when fewer days remain (0: never)"},
    )
    credentials_dir: str = field(
        default="/etc/huiyuan/credentials",
        metadata={"doc": "where enrolment wrote store.key/store.pem/ca.pem; renewal rewrites them"},
    )

    @property
    def tls(self) -> bool:
        return urlparse(self.broker_url).scheme == "mqtts"

    @property
    def host(self) -> str:
        return urlparse(self.broker_url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlparse(self.broker_url).port or (8883 if self.tls else 1883)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SyncConfig:
        """Build and validate; ConfigError naming every bad key path (``sync.<key>``)."""
        data = data or {}
        if not isinstance(data, dict):
            raise ConfigError(f"sync: expected a table, got {type(data).__name__}", field="sync")
        problems: list[str] = []
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        base = cls()
        for key, value in data.items():
            if key not in fields:
                problems.append(f"sync.{key}: unknown key")
                continue
            default = getattr(base, key)
            if (
                isinstance(default, float)
                and isinstance(value, int)
                and not isinstance(value, bool)
            ):
                value = float(value)
            if isinstance(value, bool) or not isinstance(value, type(default)):
                problems.append(f"sync.{key}: {value!r} should be {type(default).__name__}")
                continue
            kwargs[key] = value
        cfg = dataclasses.replace(base, **kwargs).with_credentials(
            os.environ.get("CREDENTIALS_DIRECTORY")
        )
        problems += cfg._problems()
        if problems:
            raise ConfigError("; ".join(problems), problems=problems, field="sync")
        return cfg

    def with_credentials(self, directory: str | None) -> SyncConfig:
        """``ca``, ``cert`` and ``key`` left empty take the files systemd put in
        ``directory`` ($CREDENTIALS_DIRECTORY, see CREDENTIAL_FILES), as the member key does;
        a path given in [sync] wins."""
        if not directory:
            return self
        handed = {"CREDENTIALS_DIRECTORY": directory}
        found = {
            name: path
            for name, file in CREDENTIAL_FILES.items()
            if not getattr(self, name) and (path := credential_path(file, handed))
        }
        return dataclasses.replace(self, **found)

    def _problems(self) -> list[str]:
        out = []
        if urlparse(self.broker_url).scheme not in ("mqtt", "mqtts"):
            out.append(f"sync.broker_url: {self.broker_url!r} must be mqtt:// or mqtts://")
        if bool(self.cert) != bool(self.key):
            out.append("sync.cert: cert and key go together")
        for name in ("ca", "cert", "key"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                out.append(f"sync.{name}: no such file {path!r}")
        if not 1 <= self.batch_size <= MAX_BATCH_ITEMS:
            out.append(f"sync.batch_size: {self.batch_size} must be 1..{MAX_BATCH_ITEMS}")
        if not 1 <= self.window <= 100:
            out.append(f"sync.window: {self.window} must be 1..100")
        if not 0 < self.ack_timeout <= 600:
            out.append(f"sync.ack_timeout: {self.ack_timeout} must be in (0, 600]")
        if not 0 < self.auth_timeout <= 10:
            out.append(f"sync.auth_timeout: {self.auth_timeout} must be in (0, 10]")
        if not 5 <= self.keepalive <= 3600:
            out.append(f"sync.keepalive: {self.keepalive} must be 5..3600")
        if self.session_expiry < 0:
            out.append("sync.session_expiry: must not be negative")
        if not 1 <= self.page_size <= 1000:
            out.append(f"sync.page_size: {self.page_size} must be 1..1000")
        if self.snapshot_timeout <= 0:
            out.append("sync.snapshot_timeout: must be positive")
        if not 0 <= self.renew_days <= 365:
            out.append(f"sync.renew_days: {self.renew_days} must be 0..365")
        if not 0 <= self.digest_interval <= 86400:
            out.append(f"sync.digest_interval: {self.digest_interval} must be 0..86400")
        return out
