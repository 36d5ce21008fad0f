"""Offline policies HQ publishes: the chain's per balance kind, and per-store overrides.

A policy says what a till may spend of one balance kind when it cannot get HQ's
online authorization (invariant 3). Each set or removal writes the policy row
(with its version, when and who) and its ``offline_policy`` change record in one
transaction. Change records go to every store; each store keeps the chain's
records and its own overrides and ignores other stores' (edge/sync/apply.py). At
a store, its override wins over the chain's policy, and either wins over the
store's own ``[offline]`` file (edge/services/offline.py).

Change keys: ``kind`` for the chain's policy, ``kind@store`` for a store's override.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw

from core.errors import NotFound, ProtocolError, ValidationError
from core.protocol import BALANCE_KINDS, STORE_CODE_RE, Change, OfflinePolicy
from core.protocol import validate_offline_policy as _validate
from hq.changes import ChangeSet, flush_changes, offline_policy_state
from hq.models import OfflinePolicyRow, utcnow

BY_MAX = 64  # published_by's column


def policy_key(kind: str, store: str | None = None) -> str:
    return kind if store is None else f"{kind}@{store}"


def _store(store: Any) -> str | None:
    if store is None:
        return None
    if not isinstance(store, str) or not STORE_CODE_RE.match(store):
        raise ValidationError(
            f"门店代码无效 (store must be 1-32 letters, digits, _ or -): {store!r}"[:200],
            field="store",
        )
    return store


def _by(by: Any) -> str | None:
    if by is None:
        return None
    if not isinstance(by, str) or not by.isprintable() or not 0 < len(by) <= BY_MAX:
        raise ValidationError(
            f"操作人须为 1-{BY_MAX} 个可打印字符 (staff must be 1-{BY_MAX} printable characters)",
            field="staff",
        )
    return by


def _kind(kind: Any) -> str:
    if kind not in BALANCE_KINDS:
        raise ValidationError(
            f"余额种类须为 {'/'.join(BALANCE_KINDS)} 之一 (kind must be one of {BALANCE_KINDS})",
            field="kind",
        )
    return kind


def check_policy(raw: Any) -> OfflinePolicy:
    """``core.protocol.validate_offline_policy`` (which bounds a daily limit by MAX_AMOUNT),
    as a ValidationError naming the field; a daily limit exactly when the mode uses one."""
    try:
        policy = _validate(raw)
    except ProtocolError as exc:
        raise ValidationError(
            f"离线策略无效 (invalid offline policy): {exc.message}", field=exc.field
        ) from None
    if policy.mode == "floor_limit" and "daily_limit" not in raw:
        raise ValidationError(
            "floor_limit 须设每日限额 (floor_limit needs daily_limit)", field="daily_limit"
        )
    if policy.mode == "online_only" and policy.daily_limit:
        raise ValidationError(
            "online_only 不设每日限额 (daily_limit goes with floor_limit only)",
            field="daily_limit",
        )
    return policy


def set_policy(
    db: pw.Database,
    raw: Any,
    store: str | None = None,
    by: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[dict[str, Any], list[Change]]:
    """Publish ``raw`` (``{kind, mode, daily_limit}``) for the chain, or for ``store`` only."""
    policy, store, by, now = check_policy(raw), _store(store), _by(by), now or utcnow()
    key = policy_key(policy.kind, store)
    values = {
        OfflinePolicyRow.mode: policy.mode,
        OfflinePolicyRow.daily_limit: policy.daily_limit,
        OfflinePolicyRow.published_at: now,
        OfflinePolicyRow.published_by: by,
        OfflinePolicyRow.removed: False,
    }
    with db.atomic():
        OfflinePolicyRow.insert(
            {
                OfflinePolicyRow.key: key,
                OfflinePolicyRow.kind: policy.kind,
                OfflinePolicyRow.store: store,
                **values,
            }
        ).on_conflict(
            conflict_target=[OfflinePolicyRow.key],
            update={**values, OfflinePolicyRow.version: OfflinePolicyRow.version + 1},
        ).execute()
        return _record(db, key, "upsert", now)


def remove_store_policy(
    db: pw.Database, kind: Any, store: Any, by: str | None = None, now: dt.datetime | None = None
) -> tuple[dict[str, Any], list[Change]]:
    """Remove ``store``'s override of ``kind``: the store follows the chain's policy again
    (or, if the chain has none for that kind, its own ``[offline]`` file)."""
    kind, by, now = _kind(kind), _by(by), now or utcnow()
    if store is None:
        raise ValidationError(
            "只能删除门店的单独策略, 全连锁策略请重新设置 (only a store override can be removed;"
            " set the chain's policy instead)",
            field="store",
        )
    key = policy_key(kind, _store(store))
    with db.atomic():
        removed = (
            OfflinePolicyRow.update(
                removed=True,
                published_at=now,
                published_by=by,
                version=OfflinePolicyRow.version + 1,
            )
            .where((OfflinePolicyRow.key == key) & (OfflinePolicyRow.removed == False))  # noqa: E712
            .execute()
        )
        if not removed:
            raise NotFound(
                f"门店 {store} 没有单独的 {kind} 离线策略 (store has no override for {kind})",
                field="store",
            )
        return _record(db, key, "delete", now)


def _record(
    db: pw.Database, key: str, op: str, now: dt.datetime
) -> tuple[dict[str, Any], list[Change]]:
    state = offline_policy_state(OfflinePolicyRow.get_by_id(key))
    changes = ChangeSet()
    changes.add("offline_policy", key, state, op=op)
    return state, flush_changes(db, changes, now)


def list_policies(store: str | None = None) -> list[dict[str, Any]]:
    """The published policies: the chain's and every store's overrides (with ``store``,
    the chain's and that store's only)."""
    query = OfflinePolicyRow.select().where(OfflinePolicyRow.removed == False)  # noqa: E712
    if store is not None:
        query = query.where(
            OfflinePolicyRow.store.is_null() | (OfflinePolicyRow.store == _store(store))
        )
    rows = query.order_by(OfflinePolicyRow.store.is_null(False), OfflinePolicyRow.key)
    return [offline_policy_state(r) for r in rows]


def policies_in_force(store: str) -> dict[str, dict[str, Any] | None]:
    """Per balance kind, what ``store`` enforces once it has HQ's records: its override,
    else the chain's; None where HQ published neither (the store's own file decides)."""
    held = {(p["kind"], p["store"]): p for p in list_policies(store)}
    return {k: held.get((k, store)) or held.get((k, None)) for k in BALANCE_KINDS}
