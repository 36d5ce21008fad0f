"""Tiers and growth value (成长值): the rules as pure functions.

HQ evaluates every member each night with set-based SQL (hq/programme/tiers.py) that
does what these functions do; the tests hold both to the same tables. The rules, in
the order they apply (docs/programme/tiers.md):

1. **Growth** is spend and actions inside the rolling window (the last
   ``window_days`` days, the evaluation day included): ``growth_per_yuan`` per whole
   yuan of net spend (money paid, points tenders not counted, returns taken off; never
   below zero), plus the points of each growth event (profile completeness, being
   named as a referrer, a review) recorded in the window.
2. **The tier growth earns** is the highest rung whose threshold the growth reaches
   (exactly on a threshold reaches it); below the lowest rung, no tier.
3. **Decay**: with ``lapse_days`` set, a member with no purchase in the last
   ``lapse_days`` days holds one rung below what growth earns (never below the
   lowest rung). It is a rung below growth, not below the current tier, so a
   lapsed member does not sink one rung every night.
4. **Manual tier**: a tier given by hand with an end date is a floor until that date
   (the evaluation upgrades past it, never downgrades below it); then rule 2 and 3
   apply again.
5. **Minimum hold**: no downgrade (nor decay) within ``min_hold_days`` of the day the
   current tier was set; upgrades are never held back.

A change's reason: ``upgrade`` to a higher rung; ``decay`` to a lower one when the
lapse decided it (the rung is one below what growth earns); else ``downgrade``.
``manual`` is a tier given by hand (HQ's ``set-tier``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from core.rules import TierRules

UPGRADE, DOWNGRADE, DECAY, MANUAL = "upgrade", "downgrade", "decay", "manual"
REASONS = (UPGRADE, DOWNGRADE, DECAY, MANUAL)


def window_start(rules: TierRules, day: dt.date) -> dt.date:
    """The first day the window counts: ``day`` and the ``window_days - 1`` days before."""
    return day - dt.timedelta(days=rules.window_days - 1)


def growth_from_spend(rules: TierRules, net_fen: int) -> int:
    """Growth for ``net_fen`` of net spend in the window: whole yuan × growth_per_yuan
    (floor), none for a negative net (more returned than bought in the window)."""
    if net_fen <= 0:
        return 0
    return net_fen * rules.growth_per_yuan // 100


def growth(rules: TierRules, net_fen: int, event_points: int) -> int:
    return growth_from_spend(rules, net_fen) + max(0, event_points)


def earned_rank(rules: TierRules, growth_value: int) -> int:
    """The index of the highest rung ``growth_value`` reaches; -1 below the lowest."""
    rank = -1
    for i, step in enumerate(rules.ladder):
        if growth_value >= step.threshold:
            rank = i
    return rank


def progress(rules: TierRules, tier: str, growth_value: int) -> dict[str, Any] | None:
    """The member's growth against the ladder, as the till and the member's page show it:
    the next rung above the tier held (or above what the growth reaches, if higher) and
    the growth still needed; None with no ladder."""
    ladder = rules.ladder
    if not ladder:
        return None
    names = [step.name for step in ladder]
    rank = max(names.index(tier) if tier in names else -1, earned_rank(rules, growth_value))
    nxt = ladder[rank + 1] if rank + 1 < len(ladder) else None
    return {
        "tier": tier,
        "growth": growth_value,
        "next_tier": nxt.name if nxt else None,
        "next_threshold": nxt.threshold if nxt else None,
        "to_next": max(0, nxt.threshold - growth_value) if nxt else 0,
    }


def lapsed(rules: TierRules, last_purchase: dt.date | None, day: dt.date) -> bool:
    """No purchase in the last ``lapse_days`` days (``day`` included); never with decay off."""
    if rules.lapse_days <= 0:
        return False
    return last_purchase is None or last_purchase <= day - dt.timedelta(days=rules.lapse_days)


@dataclass(frozen=True, slots=True)
class TierDecision:
    tier: str | None  # None: no tier
    reason: str | None  # one of REASONS when the tier changes, else None

    @property
    def changed(self) -> bool:
        return self.reason is not None


def decide(
    rules: TierRules,
    day: dt.date,
    current: str | None,
    tier_since: dt.date | None,
    growth_value: int,
    last_purchase: dt.date | None,
    manual: str | None = None,
    manual_until: dt.date | None = None,
) -> TierDecision:
    """The member's tier after the evaluation of ``day`` (rules 2 to 5 above)."""
    current = current or None
    now_rank = rules.rank(current)
    earned = earned_rank(rules, growth_value)
    target = earned
    decayed = False
    if lapsed(rules, last_purchase, day) and earned > 0:
        target, decayed = earned - 1, True
    if manual is not None and manual_until is not None and manual_until >= day:
        target = max(target, rules.rank(manual))
    held = (
        target < now_rank
        and tier_since is not None
        and tier_since > day - dt.timedelta(days=rules.min_hold_days)
    )
    if held or target == now_rank:  # (a tier off the ladder stays while growth earns none)
        return TierDecision(current, None)
    tier = rules.ladder[target].name if target >= 0 else None
    if target > now_rank:
        return TierDecision(tier, UPGRADE)
    return TierDecision(tier, DECAY if decayed and target == earned - 1 else DOWNGRADE)
