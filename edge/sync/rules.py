"""Rules documents at the store: take one only if this software can honour it.

A rules document from HQ is checked with ``Rules.from_dict`` as it arrives. One this
till cannot load (a newer ``schema``, a key it does not know: ``RulesNotSupported``;
or a malformed one) is refused as a whole: the rules in force stay, the refusal is
kept in the Setting ``rules_refused`` ({version, reason, at, document}) and reported
to HQ once as a ``rules_status`` up item. Every version taken is reported the same way,
so HQ knows each store's version in force (docs/programme/rules.md).

After a software upgrade, ``retry_refused_rules`` takes a refused document the new
software can load (the agent calls it at start): HQ does not send it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from peewee import SqliteDatabase

from core.errors import HuiyuanError
from core.protocol import MAX_REFUSAL_LEN
from core.rules import Rules
from edge.models import Setting

log = logging.getLogger("edge.sync.rules")

RULES = "rules"
REFUSED = "rules_refused"
REPORTED = "rules_reported"  # the last status sent: {version_in_force, refused_version}


@dataclass(frozen=True)
class _Sender:
    """What ``edge.services.outbox.enqueue`` needs of a till: its database and code."""

    db: SqliteDatabase
    store: str


def _get(key: str) -> Any:
    row = Setting.get_or_none(Setting.key == key)
    return row.value if row is not None else None


def _put(key: str, value: Any) -> None:
    Setting.insert(key=key, value=value).on_conflict_replace().execute()


def refusal_reason(doc: Any) -> str | None:
    """Why this software cannot honour ``doc`` (None: it can)."""
    if not isinstance(doc, dict):
        return "rules document is not an object"
    try:
        Rules.from_dict(doc)
    except HuiyuanError as exc:
        return exc.message[:MAX_REFUSAL_LEN]
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        return f"malformed rules document: {exc}"[:MAX_REFUSAL_LEN]
    return None


def _version(doc: Any) -> int:
    value = doc.get("version") if isinstance(doc, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def version_in_force() -> int:
    """The version of HQ's rules this till holds (0: none from HQ yet)."""
    return _version(_get(RULES))


def receive_rules(store: str, doc: dict[str, Any], now: str) -> str:
    """Take or refuse one rules document (inside the applier's transaction); answers
    ``taken``, ``refused`` or ``stale`` (older than the version in force: ignored)."""
    current = _get(RULES)
    in_force = _version(current)
    version = _version(doc)
    if current is not None and version < in_force:
        return "stale"
    reason = refusal_reason(doc)
    if reason is not None:
        log.warning("rules version %s refused, keeping %s: %s", version, in_force, reason)
        refused = _get(REFUSED) or {}
        if refused.get("version") != version or refused.get("reason") != reason:
            _put(REFUSED, {"version": version, "reason": reason, "at": now, "document": doc})
        _report(store, in_force, version, reason, now)
        return "refused"
    _put(RULES, doc)
    refused = _get(REFUSED)
    if refused is not None and int(refused.get("version") or 0) <= version:
        Setting.delete().where(Setting.key == REFUSED).execute()
        refused = None
    if refused is not None:
        _report(store, version, refused["version"], refused["reason"], now)
    else:
        _report(store, version, None, "", now)
    return "taken"


def _report(store: str, in_force: int, refused: int | None, reason: str, now: str) -> None:
    """One ``rules_status`` item per new status: a refusal seen again (a snapshot, a
    page asked twice) sends nothing more."""
    status = {"version_in_force": in_force, "refused_version": refused}
    if _get(REPORTED) == status:
        return
    from edge.services.outbox import enqueue

    body = status | {"reason": reason, "at": now}
    enqueue(_Sender(Setting._meta.database, store), "rules_status", body, now, in_force)  # type: ignore[arg-type]
    _put(REPORTED, status)


def retry_refused_rules(db: SqliteDatabase, store: str, now: str) -> str | None:
    """Take a refused document this software now loads (after an upgrade); None when
    there is none, else what ``receive_rules`` answered."""
    with db.atomic():
        refused = _get(REFUSED)
        if not refused or refusal_reason(refused.get("document")) is not None:
            return None
        return receive_rules(store, refused["document"], now)
