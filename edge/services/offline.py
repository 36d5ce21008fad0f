"""Which offline policy the till enforces, per balance kind (invariant 3).

HQ's published policy wins: this store's override, else the chain's. The sync
applier keeps them as settings (``offline_policy.store.<kind>`` and
``offline_policy.<kind>``, see ``policy_setting``). The store's own ``[offline]``
section is only the fallback for a kind HQ has published nothing for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.errors import ProtocolError
from core.protocol import BALANCE_KINDS, OfflinePolicy, validate_offline_policy
from edge.config import EdgeConfig
from edge.models import Setting

HQ = "hq"
LOCAL = "local config"


def policy_setting(kind: str, store_override: bool) -> str:
    """The setting that holds HQ's policy for ``kind``: this store's override or the chain's."""
    return f"offline_policy.store.{kind}" if store_override else f"offline_policy.{kind}"


@dataclass(frozen=True)
class PolicyInForce:
    policy: OfflinePolicy
    source: str  # HQ or LOCAL
    scope: str | None = None  # from HQ: "store" (this store's override) or "chain"
    version: int | None = None
    published_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.policy.mode,
            "daily_limit": self.policy.daily_limit,
            "source": self.source,
        }
        if self.source == HQ:
            out |= {"scope": self.scope, "version": self.version, "published_at": self.published_at}
        return out


def policy_in_force(config: EdgeConfig, kind: str) -> PolicyInForce:
    keys = {policy_setting(kind, True): "store", policy_setting(kind, False): "chain"}
    held = {r.key: r.value for r in Setting.select().where(Setting.key.in_(list(keys)))}
    for key, scope in keys.items():
        data = held.get(key)
        if not data:  # never published, or (a store override) removed
            continue
        try:
            policy = validate_offline_policy(data)
        except ProtocolError:
            policy = OfflinePolicy(kind)  # unreadable: spend nothing offline rather than guess
        if policy.kind != kind:
            policy = OfflinePolicy(kind)
        return PolicyInForce(policy, HQ, scope, data.get("version"), data.get("published_at"))
    local = getattr(config.offline, kind)
    return PolicyInForce(OfflinePolicy(kind, local.mode, local.daily_limit), LOCAL)


def policies_in_force(config: EdgeConfig) -> dict[str, dict[str, Any]]:
    """Every balance kind's policy in force and where it came from (for the status route)."""
    return {kind: policy_in_force(config, kind).to_dict() for kind in BALANCE_KINDS}
