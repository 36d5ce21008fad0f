"""The edge's one configuration object, validated once at start.

Read from a TOML file; every field has a default that runs a demo store, and a
one-line description. Unknown keys are errors. Secrets (none yet besides the
member key file) come from files, e.g. in ``$CREDENTIALS_DIRECTORY``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from core.credentials import credential_path
from core.errors import ConfigError
from core.money import MAX_AMOUNT, Rounding

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

BALANCE_POLICIES = ("online_only", "floor_limit")


@dataclass(frozen=True)
class StoreSection:
    code: str = field(default="S001", metadata={"doc": "store code, unique in the chain"})
    name: str = field(default="会员示范店", metadata={"doc": "store name printed on receipts"})
    utc_offset_minutes: int = field(default=480, metadata={"doc": "local time offset (China: 480)"})


@dataclass(frozen=True)
class DatabaseSection:
    path: str = field(default="", metadata={"doc": "SQLite file; default <data_dir>/edge.sqlite3"})
    synchronous: str = field(
        default="FULL", metadata={"doc": "SQLite synchronous: FULL survives power loss"}
    )
    checkpoint_interval_ms: int = field(
        default=1000,
        metadata={"doc": "till server: copy the WAL into the database this often, between sales"},
    )
    wal_limit_mb: int = field(
        default=16,
        metadata={"doc": "till server: past this WAL size, checkpoint fully even if sales wait"},
    )


@dataclass(frozen=True)
class BalancePolicy:
    """This store's own offline policy for one balance kind: the fallback used only until
    HQ publishes one for that kind (edge/services/offline.py)."""

    mode: str = field(
        default="online_only",
        metadata={"doc": "online_only or floor_limit, until HQ publishes a policy"},
    )
    daily_limit: int = field(
        default=0, metadata={"doc": "floor_limit: per member per day at this store (fen or points)"}
    )


@dataclass(frozen=True)
class OfflineSection:
    stored_value: BalancePolicy = field(default_factory=BalancePolicy)
    points: BalancePolicy = field(default_factory=BalancePolicy)
    coupons: BalancePolicy = field(default_factory=BalancePolicy)


@dataclass(frozen=True)
class TillSection:
    rounding: str = field(
        default="",
        metadata={"doc": "抹零 override: none, jiao_down, yuan_down, ...; empty = rules"},
    )
    rules_file: str = field(
        default="", metadata={"doc": "JSON rules document; empty = built-in demo rules"}
    )
    session_hours: int = field(
        default=12, metadata={"doc": "how long a staff sign-in lasts at most, however busy"}
    )
    session_idle_minutes: int = field(
        default=30,
        metadata={
            "doc": "a staff sign-in ends after this many minutes without a request (0: only"
            " session_hours ends it)"
        },
    )
    cashier_discount_limit: int = field(
        default=100,
        metadata={
            "doc": "line and order discounts a cashier gives without a manager, permille of"
            " the subtotal (0: none; 1000: any)"
        },
    )
    pin_max_failures: int = field(
        default=5, metadata={"doc": "wrong PINs in a row that lock a staff code"}
    )
    pin_lockout_minutes: int = field(
        default=5, metadata={"doc": "how long a staff code stays locked after too many wrong PINs"}
    )
    cashier_topup_limit: int = field(
        default=200_000,
        metadata={"doc": "fen a cashier tops up in one top-up without a manager (¥2,000)"},
    )
    cashier_topup_day_limit: int = field(
        default=1_000_000,
        metadata={
            "doc": "fen one cashier tops up in a store day without a manager (¥10,000);"
            " past it each top-up needs one (across their shifts)"
        },
    )
    topup_max: int = field(
        default=1_000_000,
        metadata={"doc": "fen one top-up may be at most, whoever approves (¥10,000)"},
    )
    address_max_failures: int = field(
        default=20,
        metadata={
            "doc": "wrong staff PINs from one address, over any codes, that lock the address"
            " (0: no limit)"
        },
    )
    address_lockout_minutes: int = field(
        default=15,
        metadata={
            "doc": "how long an address stays locked; also the window its wrong PINs count in"
        },
    )
    self_service_url: str = field(
        default="https://m.example.cn/m/{token}",
        metadata={
            "doc": "QR code target on receipts: HQ's member page, {token} the member's "
            "signed link (docs/member-page.md)"
        },
    )


@dataclass(frozen=True)
class SecuritySection:
    key_file: str = field(
        default="", metadata={"doc": "member data key; default <data_dir>/keys/member.key"}
    )
    scrypt_n: int = field(
        default=2**14,
        metadata={
            "doc": "scrypt cost for staff PINs (power of 2); member passwords always use the"
            " chain's (core.protocol.SCRYPT_N)"
        },
    )


LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class HttpSection:
    """The till's network surface (docs/operations.md, "The till's network surface"):
    the addresses it listens on, and the client networks it answers."""

    listen: list[str] = field(
        default_factory=lambda: ["127.0.0.1"],
        metadata={
            "doc": "addresses the till API listens on, all on http.port: loopback, and the"
            ' box\'s own LAN addresses the screens use, e.g. ["127.0.0.1", "192.168.1.20"]'
        },
    )
    port: int = field(default=8080, metadata={"doc": "till API port"})
    allow: list[str] = field(
        default_factory=list,
        metadata={
            "doc": "client networks (CIDR) the till API answers besides loopback (always"
            ' allowed), e.g. ["192.168.1.0/24"]; others get 403'
        },
    )

    def networks(self) -> tuple[IPNetwork, ...]:
        """Loopback and ``allow``: the networks whose clients the till API answers."""
        return LOOPBACK + tuple(ipaddress.ip_network(cidr) for cidr in self.allow)


def client_allowed(address: str | None, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether a client at ``address`` (a request's remote address) is in ``networks``.
    An IPv4 client reaching an IPv6 socket appears as ::ffff:a.b.c.d: its IPv4 address is
    the one checked. Anything that is not an address (none, a Unix socket) is refused."""
    try:
        ip = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


def _check_http(http: HttpSection, problems: list[str]) -> None:
    if not 0 < http.port < 65536:
        problems.append(f"http.port: {http.port} out of range")
    if not http.listen:
        problems.append('http.listen: empty; at least one address, e.g. ["127.0.0.1"]')
    lan: list[str] = []
    for i, address in enumerate(http.listen):
        try:
            if not isinstance(address, str):
                raise TypeError(address)
            ip = ipaddress.ip_address(address)
        except (TypeError, ValueError):
            problems.append(
                f"http.listen[{i}]: {address!r} is not an IP address (a host name is not"
                ' accepted: name the box\'s own address, e.g. "192.168.1.20")'
            )
            continue
        if not ip.is_loopback:
            lan.append(address)
    if len(set(map(str, http.listen))) != len(http.listen):
        problems.append(f"http.listen: {http.listen!r} names an address twice")
    for i, cidr in enumerate(http.allow):
        try:
            if not isinstance(cidr, str):
                raise TypeError("a text is expected")
            ipaddress.ip_network(cidr)
        except (TypeError, ValueError) as exc:
            problems.append(
                f'http.allow[{i}]: {cidr!r} is not a network such as "192.168.1.0/24" ({exc})'
            )
    if lan and not http.allow:
        problems.append(
            f"http.allow: empty, so no screen could reach the LAN address {lan[0]} that"
            ' http.listen names: list the screens\' networks, e.g. ["192.168.1.0/24"]'
        )


@dataclass(frozen=True)
class EdgeConfig:
    data_dir: str = field(
        default="var/edge", metadata={"doc": "where the database, keys and queues live"}
    )
    store: StoreSection = field(default_factory=StoreSection)
    database: DatabaseSection = field(default_factory=DatabaseSection)
    till: TillSection = field(default_factory=TillSection)
    offline: OfflineSection = field(default_factory=OfflineSection)
    security: SecuritySection = field(default_factory=SecuritySection)
    http: HttpSection = field(default_factory=HttpSection)
    # sections owned by other packages, validated by them (devices, sync)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def db_path(self) -> Path:
        return (
            Path(self.database.path) if self.database.path else Path(self.data_dir) / "edge.sqlite3"
        )

    @property
    def key_path(self) -> Path:
        if self.security.key_file:
            return Path(self.security.key_file)
        handed = credential_path("member.key")
        return Path(handed) if handed else Path(self.data_dir) / "keys" / "member.key"


EXTRA_SECTIONS = ("devices", "sync", "metrics")


def _build(base: Any, data: dict[str, Any], path: str, problems: list[str]) -> Any:
    """``base`` with the keys of ``data`` replaced, checked against the defaults' types."""
    cls = type(base)
    if not isinstance(data, dict):
        problems.append(f"{path or '<root>'}: expected a table, got {type(data).__name__}")
        return base
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else key
        if key not in fields or key == "extra":
            if cls is EdgeConfig and key in EXTRA_SECTIONS:
                kwargs.setdefault("extra", {})[key] = value
                continue
            problems.append(f"{key_path}: unknown key")
            continue
        default = getattr(base, key)
        if dataclasses.is_dataclass(default):
            kwargs[key] = _build(default, value, key_path, problems)
        elif isinstance(default, bool) != isinstance(value, bool) or not isinstance(
            value, type(default)
        ):
            problems.append(f"{key_path}: {value!r} should be {type(default).__name__}")
        else:
            kwargs[key] = value
    return dataclasses.replace(base, **kwargs)


def _check(cfg: EdgeConfig, problems: list[str]) -> None:
    from core.protocol import STORE_CODE_RE

    if not STORE_CODE_RE.match(cfg.store.code):
        problems.append(f"store.code: {cfg.store.code!r} must be 1-32 letters, digits, _ or -")
    if cfg.database.synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        problems.append(
            f"database.synchronous: {cfg.database.synchronous!r} not OFF/NORMAL/FULL/EXTRA"
        )
    if cfg.database.checkpoint_interval_ms <= 0:
        problems.append("database.checkpoint_interval_ms: must be positive")
    if cfg.database.wal_limit_mb <= 0:
        problems.append("database.wal_limit_mb: must be positive")
    if cfg.till.rounding and cfg.till.rounding not in {r.value for r in Rounding}:
        problems.append(
            f"till.rounding: {cfg.till.rounding!r} not one of {[r.value for r in Rounding]}"
        )
    for kind in ("stored_value", "points", "coupons"):
        policy: BalancePolicy = getattr(cfg.offline, kind)
        if policy.mode not in BALANCE_POLICIES:
            problems.append(
                f"offline.{kind}.mode: {policy.mode!r} not one of {list(BALANCE_POLICIES)}"
            )
        if policy.daily_limit < 0:
            problems.append(f"offline.{kind}.daily_limit: must not be negative")
    n = cfg.security.scrypt_n
    if n < 2**10 or n & (n - 1):
        problems.append(f"security.scrypt_n: {n} must be a power of two, at least 1024")
    _check_http(cfg.http, problems)
    if cfg.till.session_hours <= 0:
        problems.append("till.session_hours: must be positive")
    if cfg.till.session_idle_minutes < 0:
        problems.append("till.session_idle_minutes: must not be negative (0: no idle limit)")
    if not 0 <= cfg.till.cashier_discount_limit <= 1000:
        problems.append("till.cashier_discount_limit: must be permille from 0 to 1000")
    if cfg.till.pin_max_failures <= 0:
        problems.append("till.pin_max_failures: must be positive")
    if cfg.till.pin_lockout_minutes <= 0:
        problems.append("till.pin_lockout_minutes: must be positive")
    for key in ("cashier_topup_limit", "cashier_topup_day_limit"):
        if getattr(cfg.till, key) < 0:
            problems.append(f"till.{key}: must not be negative")
    if not 0 < cfg.till.topup_max <= MAX_AMOUNT:
        problems.append(f"till.topup_max: must be from 1 to {MAX_AMOUNT} fen")
    if cfg.till.address_max_failures < 0:
        problems.append("till.address_max_failures: must not be negative (0: no limit)")
    if cfg.till.address_lockout_minutes <= 0:
        problems.append("till.address_lockout_minutes: must be positive")


def config_problems(data: dict[str, Any]) -> tuple[EdgeConfig, list[str]]:
    problems: list[str] = []
    cfg = _build(EdgeConfig(), data, "", problems)
    _check(cfg, problems)
    devices = cfg.extra.get("devices")
    if devices is not None:
        try:
            from edge.devices.config import DevicesConfig

            DevicesConfig.from_dict(devices)
        except ImportError:
            pass  # devices package not present in this install: nothing to validate against
        except ConfigError as exc:
            problems.append(f"devices: {exc.message}")
    if cfg.extra.get("metrics") is not None:
        from edge.metrics import MetricsConfig

        try:
            MetricsConfig.from_dict(cfg.extra["metrics"])
        except ConfigError as exc:
            problems.extend(exc.details.get("problems") or [exc.message])  # type: ignore[arg-type]
    sync = cfg.extra.get("sync")
    if sync is not None:
        from edge.sync.config import SyncConfig

        try:
            SyncConfig.from_dict(sync)
        except ConfigError as exc:
            problems.extend(exc.details.get("problems") or [exc.message])  # type: ignore[arg-type]
    return cfg, problems


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> EdgeConfig:
    """Load and validate; raise ConfigError listing every problem."""
    data: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if overrides:
        data = _merge(data, overrides)
    cfg, problems = config_problems(data)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems), problems=problems)
    return cfg


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def reference_toml(cfg: Any = None, path: str = "") -> str:
    """Every setting with its default and one-line description, as TOML."""
    cfg = cfg if cfg is not None else EdgeConfig()
    scalars, tables = [], []
    for f in dataclasses.fields(cfg):
        if f.name == "extra":
            continue
        value = getattr(cfg, f.name)
        key_path = f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(value):
            tables.append(f"\n[{key_path}]\n" + reference_toml(value, key_path))
        else:
            doc = f.metadata.get("doc", "")
            literal = (
                json.dumps(value, ensure_ascii=False)
                if isinstance(value, list)
                else f'"{value}"'
                if isinstance(value, str)
                else str(value).lower()
                if isinstance(value, bool)
                else str(value)
            )
            scalars.append(f"{f.name} = {literal}" + (f"  # {doc}" if doc else ""))
    return "\n".join(scalars) + "".join(tables) + ("\n" if not path else "")
