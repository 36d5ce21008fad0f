"""The till context every service takes: database, config, keys, clock, authorizer."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from peewee import SqliteDatabase

from core.errors import ConfigError, ValidationError
from core.rules import DEMO_RULES, Rules
from edge.checkpointer import WalCheckpointer
from edge.config import EdgeConfig
from edge.models import Setting
from edge.security import MemberKeys

log = logging.getLogger("edge.services.context")


@dataclass(frozen=True)
class SpendRequest:
    sale_id: str
    member_id: str
    stored_value: int  # fen
    points: int
    day: str
    coupons: tuple[str, ...] = ()  # coupon codes to hold (docs/programme/coupons.md)
    action: str = "hold"  # core.protocol.AUTH_ACTIONS: "refund" for a stored value refund


@dataclass(frozen=True)
class SpendDecision:
    online: bool  # True: HQ answered; False: the offline policy must decide
    approved: bool = False
    authorization_id: str | None = None
    reason: str = ""
    # HQ's split of the stored value held: {"principal", "bonus"} (a refund's forfeit)
    stored_value_split: dict[str, int] | None = None


class SpendAuthorizer(Protocol):
    def authorize(self, request: SpendRequest) -> SpendDecision: ...


class OfflineOnly:
    """No HQ to ask: every spend is decided by the store's offline policy."""

    def authorize(self, request: SpendRequest) -> SpendDecision:
        return SpendDecision(online=False, reason="no online authorizer configured")


_RULES_VERSION_SQL = (
    'SELECT json_extract("value", \'$.version\') FROM "setting" WHERE "key" = \'rules\''
)


def system_clock(offset_minutes: int) -> Callable[[], dt.datetime]:
    tz = dt.timezone(dt.timedelta(minutes=offset_minutes))
    return lambda: dt.datetime.now(tz)


@dataclass
class Till:
    config: EdgeConfig
    db: SqliteDatabase
    keys: MemberKeys
    clock: Callable[[], dt.datetime]
    authorizer: SpendAuthorizer = field(default_factory=OfflineOnly)
    _rules_cache: tuple[Any, Rules] | None = None

    @property
    def store(self) -> str:
        return self.config.store.code

    def now(self) -> dt.datetime:
        return self.clock()

    def rules(self) -> Rules:
        """The rules in force: HQ's latest (a Setting) else the configured file else the demo."""
        if self._rules_cache:
            # every checkout asks: compare the version without loading the document
            row = self.db.execute_sql(_RULES_VERSION_SQL).fetchone()
            if ("setting", row[0] if row else None) == self._rules_cache[0]:
                return self._rules_cache[1]
        row = Setting.get_or_none(Setting.key == "rules")
        doc = row.value if row else None
        key = ("setting", doc.get("version") if doc else None)
        if self._rules_cache and self._rules_cache[0] == key:
            return self._rules_cache[1]
        if doc:
            try:
                rules = Rules.from_dict(doc)
            except (ValidationError, TypeError, ValueError, KeyError, AttributeError) as exc:
                # a document stored before the till checked them (edge/sync/rules.py):
                # never fail a checkout for it; trade on the last rules loaded
                log.error("stored rules version %s cannot be loaded: %s", key[1], exc)
                rules = self._fallback_rules()
        elif self.config.till.rules_file:
            try:
                rules = Rules.from_dict(json.loads(Path(self.config.till.rules_file).read_text()))
            except (OSError, ValueError, ValidationError) as exc:
                raise ConfigError(f"till.rules_file {self.config.till.rules_file}: {exc}") from None
        else:
            rules = DEMO_RULES
        self._rules_cache = (key, rules)
        return rules

    def _fallback_rules(self) -> Rules:
        """The last rules this process loaded, else the configured file's, else the demo."""
        if self._rules_cache:
            return self._rules_cache[1]
        if self.config.till.rules_file:
            try:
                return Rules.from_dict(json.loads(Path(self.config.till.rules_file).read_text()))
            except (OSError, ValueError, ValidationError) as exc:
                log.error("till.rules_file %s: %s", self.config.till.rules_file, exc)
        return DEMO_RULES

    def rounding(self, rules: Rules | None = None) -> str:
        """The store's 抹零 override, else that of ``rules`` (default: the rules in force)."""
        return self.config.till.rounding or str((rules or self.rules()).rounding)


def start_checkpointer(till: Till) -> WalCheckpointer:
    """The till server's WAL checkpointer process (edge/checkpointer.py); start it before
    serving, so every request thread's connection gets the backstop setting."""
    db_cfg = till.config.database
    return WalCheckpointer(
        till.db, db_cfg.checkpoint_interval_ms / 1000, db_cfg.wal_limit_mb * 2**20
    ).start()


def open_till(
    config: EdgeConfig,
    clock: Callable[[], dt.datetime] | None = None,
    authorizer: SpendAuthorizer | None = None,
    create_key: bool = False,
) -> Till:
    """Open the store database and keys named by ``config``; the one way services get a Till."""
    from edge.models import open_database
    from edge.security import create_key_file

    if create_key:
        create_key_file(config.key_path)
    db = open_database(config.db_path, config.database.synchronous)
    return Till(
        config=config,
        db=db,
        keys=MemberKeys.load(config.key_path),
        clock=clock or system_clock(config.store.utc_offset_minutes),
        authorizer=authorizer or OfflineOnly(),
    )
