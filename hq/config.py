"""HQ's one configuration object: database URL, broker connection, API address.

Every field has a default that runs a single shop on this machine; the CLI and
environment (``HY_HQ_DATABASE_URL``, ``HY_MQTT_URL``, ``HY_MQTT_CA``, ``HY_MQTT_CERT``,
``HY_MQTT_KEY``, ``HY_HQ_LOOKUP_KEY_FILE``,
``HY_HQ_METRICS_TOKEN_FILE``, ``HY_HQ_CA_DIR``,
``HY_HQ_STORE_BROKER_URL``, ``HY_HQ_TIMEZONE``, ``HY_HQ_CONSOLE_SECURE_COOKIE``,
``HY_HQ_SMS_GATEWAY_URL``, ``HY_HQ_SMS_CREDENTIALS_FILE``, ``HY_HQ_SMS_STATUS_URL``,
``HY_HQ_WECHAT_API_URL``, ``HY_HQ_WECHAT_STATUS_URL``, ``HY_HQ_WECHAT_CREDENTIALS_FILE``,
``HY_HQ_WECHAT_TEMPLATE_ID``, ``HY_HQ_WECHAT_TIMEOUT``, ``HY_HQ_MEMBER_PAGE_URL``) override them. Validated once at start.

Secrets come from files in ``$CREDENTIALS_DIRECTORY``, which systemd's ``LoadCredential=``
fills (systemd/huiyuan-hq-*.service; the table is in docs/operations.md): the database
URL with its password (credential ``database-url``) when ``HY_HQ_DATABASE_URL`` is not
set, and HQ's MQTT identity (``mqtt-ca.pem``, ``mqtt-cert.pem``, ``mqtt-key.pem``, the
names the edge uses) when ``HY_MQTT_CA`` / ``_CERT`` / ``_KEY`` are not. A secret in the
environment shows in ``systemctl show`` and ``/proc/<pid>/environ``; a credential does not.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.credentials import credential_path, read_credential
from core.errors import ConfigError

# systemd credential names (LoadCredential=NAME:/etc/huiyuan/credentials/FILE)
CREDENTIAL_DATABASE_URL = "database-url"
CREDENTIAL_SMS_GATEWAY = "sms-gateway"  # -- memberpage
CREDENTIAL_WECHAT_GATEWAY = "wechat-gateway"  # -- campaigns (channels)
MQTT_CREDENTIALS = {"ca": "mqtt-ca.pem", "cert": "mqtt-cert.pem", "key": "mqtt-key.pem"}


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
    lookup_key_file: str = field(
        default="",
        metadata={
            "doc": "the chain's phone lookup key (32 bytes, 0600); empty = "
            "$CREDENTIALS_DIRECTORY/lookup.key, else lookup.key beside a SQLite database"
        },
    )

    def lookup_key_path(self) -> Path:
        """Where the chain lookup key is (hq/lookup.py): every HQ process of a chain
        must name the same file."""
        if self.lookup_key_file:
            return Path(self.lookup_key_file)
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if creds:
            return Path(creds) / "lookup.key"
        if self.database_url.startswith("sqlite:///"):
            return Path(self.database_url.removeprefix("sqlite:///")).parent / "lookup.key"
        raise ConfigError(
            "lookup_key_file is required with PostgreSQL (HY_HQ_LOOKUP_KEY_FILE, or the "
            "credential lookup.key): every HQ node must read the same key",
            field="lookup_key_file",
        )

    metrics_token_file: str = field(
        default="",
        metadata={
            "doc": "bearer token Prometheus sends for /metrics; default: systemd's "
            "metrics-token credential; neither: the HQ API's /metrics answers 404"
        },
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

    timezone: str = field(
        default="Asia/Shanghai",
        metadata={
            "doc": "the chain's time zone (IANA name, env HY_HQ_TIMEZONE): the business day "
            "HQ's programme jobs (points expiry, tier evaluation, card expiry) run for"
        },
    )

    console_secure_cookie: bool = field(
        default=True,
        metadata={
            "doc": "mark the console's session cookie Secure (sent over HTTPS only; browsers "
            "also accept it from http://127.0.0.1 and localhost); env "
            "HY_HQ_CONSOLE_SECURE_COOKIE=0 only behind a TLS proxy that speaks plain HTTP "
            "to a non-local address"
        },
    )

    # -- memberpage: the SMS gateway (hq/channels/sms.py, docs/operations.md)
    sms_gateway_url: str = field(
        default="",
        metadata={
            "doc": "the SMS gateway's send URL (env HY_HQ_SMS_GATEWAY_URL); empty: no SMS, "
            "the member page cannot send verification codes"
        },
    )
    sms_credentials_file: str = field(
        default="",
        metadata={
            "doc": "file holding the gateway's bearer credential (env "
            "HY_HQ_SMS_CREDENTIALS_FILE); empty: systemd's sms-gateway credential"
        },
    )
    sms_timeout: float = field(
        default=5.0, metadata={"doc": "seconds to wait for the SMS gateway's answer"}
    )

    def sms_credentials_path(self) -> str:
        path = self.sms_credentials_file or credential_path(CREDENTIAL_SMS_GATEWAY)
        if not path:
            raise ConfigError(
                "sms_credentials_file is required with sms_gateway_url "
                "(HY_HQ_SMS_CREDENTIALS_FILE, or the credential sms-gateway)",
                field="sms_credentials_file",
            )
        return path

    # -- end memberpage

    # -- campaigns (channels): delivery reports, WeChat, the member page's address
    # (hq/channels/, hq/portal/links.py, docs/operations.md "Campaign channels")
    sms_status_url: str = field(
        default="",
        metadata={
            "doc": "the SMS gateway's delivery-status URL (env HY_HQ_SMS_STATUS_URL); empty: "
            "the send URL with its last path segment replaced by 'status'"
        },
    )
    wechat_api_url: str = field(
        default="",
        metadata={
            "doc": "the WeChat template-message adapter's send URL (env HY_HQ_WECHAT_API_URL); "
            "empty: no WeChat channel"
        },
    )
    wechat_status_url: str = field(
        default="",
        metadata={
            "doc": "the WeChat adapter's delivery-status URL (env HY_HQ_WECHAT_STATUS_URL); "
            "empty: the send URL's sibling 'status'"
        },
    )
    wechat_credentials_file: str = field(
        default="",
        metadata={
            "doc": "file holding the WeChat adapter's bearer credential (env "
            "HY_HQ_WECHAT_CREDENTIALS_FILE); empty: systemd's wechat-gateway credential"
        },
    )
    wechat_template_id: str = field(
        default="",
        metadata={
            "doc": "the official account's template id campaign messages use (env "
            "HY_HQ_WECHAT_TEMPLATE_ID); required with wechat_api_url"
        },
    )
    wechat_timeout: float = field(
        default=5.0,
        metadata={"doc": "seconds to wait for the WeChat adapter (env HY_HQ_WECHAT_TIMEOUT)"},
    )
    member_page_url: str = field(
        default="https://m.example.cn/m/{token}",
        metadata={
            "doc": "the member page's public address, {token} the signed link (env "
            "HY_HQ_MEMBER_PAGE_URL); campaign messages link to it and to its /unsubscribe"
        },
    )

    def wechat_credentials_path(self) -> str:
        path = self.wechat_credentials_file or credential_path(CREDENTIAL_WECHAT_GATEWAY)
        if not path:
            raise ConfigError(
                "wechat_credentials_file is required with wechat_api_url "
                "(HY_HQ_WECHAT_CREDENTIALS_FILE, or the credential wechat-gateway)",
                field="wechat_credentials_file",
            )
        return path

    def _validate_channels(self) -> None:
        for name in ("sms_status_url", "wechat_api_url", "wechat_status_url"):
            value = getattr(self, name)
            if value and urlparse(value).scheme not in ("http", "https"):
                raise ConfigError(f"{name} must start with http:// or https://", field=name)
        if self.wechat_api_url:
            if not self.wechat_template_id.strip():
                raise ConfigError(
                    "wechat_template_id is required with wechat_api_url",
                    field="wechat_template_id",
                )
            self.wechat_credentials_path()
        if not self.wechat_timeout > 0:
            raise ConfigError("wechat_timeout must be positive seconds", field="wechat_timeout")
        page = self.member_page_url
        if urlparse(page).scheme not in ("http", "https") or page.count("{token}") != 1:
            raise ConfigError(
                "member_page_url must be an http(s) URL with one {token}",
                field="member_page_url",
            )

    # -- end campaigns (channels)

    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"timezone must be an IANA time zone name, got {self.timezone!r}",
                field="timezone",
            ) from None

    def business_day(self, utc: dt.datetime) -> dt.date:
        """The chain's calendar day at the naive-UTC instant ``utc``."""
        return utc.replace(tzinfo=dt.UTC).astimezone(self.zone()).date()

    def validate(self) -> HqConfig:
        self.zone()
        scheme = urlparse(self.database_url).scheme
        if scheme not in ("sqlite", "postgres", "postgresql"):
            raise ConfigError(
                # the scheme only: the rest may hold a password
                f"database_url must be sqlite:/// or postgresql://, got {scheme or 'no'} scheme",
                field="database_url",
            )
        self.mqtt.validate()
        # -- memberpage
        if self.sms_gateway_url:
            if urlparse(self.sms_gateway_url).scheme not in ("http", "https"):
                raise ConfigError(
                    "sms_gateway_url must start with http:// or https://",
                    field="sms_gateway_url",
                )
            self.sms_credentials_path()
        # -- end memberpage
        self._validate_channels()  # -- campaigns (channels)
        return self

    @classmethod
    def from_env(cls, **overrides: object) -> HqConfig:
        env = os.environ
        mqtt = MqttSettings(
            url=env.get("HY_MQTT_URL", MqttSettings.url),
            ca=env.get("HY_MQTT_CA") or credential_path(MQTT_CREDENTIALS["ca"]),
            cert=env.get("HY_MQTT_CERT") or credential_path(MQTT_CREDENTIALS["cert"]),
            key=env.get("HY_MQTT_KEY") or credential_path(MQTT_CREDENTIALS["key"]),
        )
        interval = env.get("HY_HQ_STATE_INTERVAL", str(cls.state_interval))
        try:
            state_interval = float(interval)
        except ValueError:
            raise ConfigError(
                f"HY_HQ_STATE_INTERVAL must be seconds, got {interval!r}", field="state_interval"
            ) from None
        database_url = (
            env.get("HY_HQ_DATABASE_URL")
            or read_credential(CREDENTIAL_DATABASE_URL)
            or cls.database_url
        )
        config = cls(
            database_url=database_url,
            mqtt=mqtt,
            lookup_key_file=env.get("HY_HQ_LOOKUP_KEY_FILE", ""),
            state_interval=state_interval,
            metrics_token_file=env.get("HY_HQ_METRICS_TOKEN_FILE", ""),
            ca_dir=env.get("HY_HQ_CA_DIR", cls.ca_dir),
            store_broker_url=env.get("HY_HQ_STORE_BROKER_URL", ""),
            timezone=env.get("HY_HQ_TIMEZONE", cls.timezone),
            console_secure_cookie=env.get("HY_HQ_CONSOLE_SECURE_COOKIE", "1") != "0",
            # -- memberpage
            sms_gateway_url=env.get("HY_HQ_SMS_GATEWAY_URL", ""),
            sms_credentials_file=env.get("HY_HQ_SMS_CREDENTIALS_FILE", ""),
            # -- end memberpage
            # -- campaigns (channels)
            sms_status_url=env.get("HY_HQ_SMS_STATUS_URL", ""),
            wechat_api_url=env.get("HY_HQ_WECHAT_API_URL", ""),
            wechat_status_url=env.get("HY_HQ_WECHAT_STATUS_URL", ""),
            wechat_credentials_file=env.get("HY_HQ_WECHAT_CREDENTIALS_FILE", ""),
            wechat_template_id=env.get("HY_HQ_WECHAT_TEMPLATE_ID", ""),
            wechat_timeout=_seconds(env, "HY_HQ_WECHAT_TIMEOUT", cls.wechat_timeout),
            member_page_url=env.get("HY_HQ_MEMBER_PAGE_URL", cls.member_page_url),
            # -- end campaigns (channels)
        )
        mqtt_over = {
            k[5:]: v for k, v in overrides.items() if k.startswith("mqtt_") and v not in (None, "")
        }
        top_over = {
            k: v for k, v in overrides.items() if not k.startswith("mqtt_") and v not in (None, "")
        }
        return replace(config, mqtt=replace(config.mqtt, **mqtt_over), **top_over).validate()


def _seconds(env: os._Environ[str] | dict[str, str], name: str, default: float) -> float:
    """A number of seconds from the environment (``default`` when unset)."""  # -- campaigns
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be seconds, got {raw!r}", field=name) from None
