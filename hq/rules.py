"""Publishing programme rules, products, card types and tiers (offline policies: hq/offline.py).

Each writes the row and its change record in one transaction; the worker's next
push or a store's next page carries it down."""

from __future__ import annotations

from typing import Any

import peewee as pw

from core.errors import ValidationError
from core.protocol import Change
from core.rules import Rules
from hq.changes import ChangeSet, flush_changes
from hq.models import CardType, Product, RulesVersion, Tier, utcnow


def publish_rules(db: pw.Database, document: dict[str, Any]) -> list[Change]:
    """Validate a rules document (``check_first_release_types``, ``Rules.from_dict``) and
    publish it as its version."""
    check_first_release_types(document)
    rules = Rules.from_dict(document)
    data = rules.to_dict()
    now = utcnow()
    with db.atomic():
        RulesVersion.insert(version=rules.version, data=data, published_at=now).on_conflict(
            conflict_target=[RulesVersion.version],
            update={RulesVersion.data: data, RulesVersion.published_at: now},
        ).execute()
        changes = ChangeSet()
        changes.add("rules", str(rules.version), data)
        for name in sorted(set(rules.card_type_discount) | set(rules.points_per_yuan) - {"*"}):
            row = {"discount": rules.card_type_discount.get(name, 1000)}
            CardType.insert(name=name, data=row).on_conflict(
                conflict_target=[CardType.name], update={CardType.data: row}
            ).execute()
            changes.add("card_type", name, {"name": name, **row})
        for name, rate in sorted(rules.tier_discount.items()):
            row = {"discount": rate}
            Tier.insert(name=name, data=row).on_conflict(
                conflict_target=[Tier.name], update={Tier.data: row}
            ).execute()
            changes.add("tier", name, {"name": name, **row})
        return flush_changes(db, changes, now)


def is_whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_first_release_types(document: dict[str, Any]) -> None:
    """Types ``Rules.from_dict`` takes on trust in the first release's keys (a till would
    misprice with ``"2"`` as a multiplier): refused by field before anything is published,
    from the console and ``huiyuan-hq publish-rules`` alike. (The tills' parser keeps
    taking them, so that a document an older HQ published still loads.)"""
    if "version" in document and not is_whole_number(document["version"]):
        raise ValidationError(
            "version 须为正整数 (version must be a whole number)", field="version"
        )
    bools = ("promo_excludes_member_discount", "promo_earns_points")
    ints = (
        "member_day_points_multiplier",
        "points_per_yuan_redeemed",
        "points_expiry_days",
    )
    for key in bools:
        if key in document and not isinstance(document[key], bool):
            raise ValidationError(f"{key} 须为 true 或 false (must be true or false)", field=key)
    for key in ints:
        if key in document and (not is_whole_number(document[key]) or document[key] < 0):
            raise ValidationError(f"{key} 须为非负整数 (must be a whole number >= 0)", field=key)
    for key, lo, hi in (("member_day_weekdays", 0, 6), ("member_day_month_days", 1, 31)):
        days = document.get(key, [])
        if not isinstance(days, list) or not all(
            is_whole_number(d) and lo <= d <= hi for d in days
        ):
            raise ValidationError(
                f"{key} 须为 {lo}..{hi} 的整数列表 (must be a list of integers {lo}..{hi})",
                field=key,
            )
    for key in ("card_type_discount", "tier_discount", "points_per_yuan"):
        table = document.get(key, {})
        if not isinstance(table, dict):
            raise ValidationError(f"{key} 须为对象 (must be an object)", field=key)
        for name, rate in table.items():
            if not is_whole_number(rate) or rate < 0:
                raise ValidationError(
                    f"{key}.{name} 须为非负整数 (must be a whole number >= 0)",
                    field=f"{key}.{name}",
                )
    bonuses = document.get("topup_bonuses", [])
    if not isinstance(bonuses, list):
        raise ValidationError("topup_bonuses 须为列表 (must be a list)", field="topup_bonuses")
    for i, pair in enumerate(bonuses):
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(is_whole_number(v) for v in pair)
            or pair[0] < 1
            or pair[1] < 0
        ):
            raise ValidationError(
                f"topup_bonuses[{i}] 须为 [门槛分>=1, 赠送分>=0]"
                " (must be [threshold fen >= 1, bonus fen >= 0])",
                field=f"topup_bonuses[{i}]",
            )


MAX_CATEGORY_LEN = 32


def check_product_goods(data: dict[str, Any]) -> dict[str, Any]:
    """A product's ``category`` (the chain's category code, text of at most 32 characters,
    empty for none) and ``cost`` (integer fen >= 0, or None/absent for not known), checked
    and normalised (docs/programme/staff.md, "Categories and cost")."""
    out = dict(data)
    if "category" in out:
        category = out["category"] if out["category"] is not None else ""
        if not isinstance(category, str) or len(category.strip()) > MAX_CATEGORY_LEN:
            raise ValidationError(
                f"品类须为不超过 {MAX_CATEGORY_LEN} 个字符的文字 (category: a text of at most "
                f"{MAX_CATEGORY_LEN} characters)",
                field="category",
            )
        out["category"] = category.strip()
    if "cost" in out:
        cost = out["cost"]
        if cost == "":
            cost = None
        if cost is not None and (isinstance(cost, bool) or not isinstance(cost, int) or cost < 0):
            raise ValidationError(
                "成本须为不小于0的整数(分), 或留空 (cost: integer fen >= 0, or empty)",
                field="cost",
            )
        out["cost"] = cost
    return out


def publish_product(
    db: pw.Database, sku: str, name: str, unit_price: int, **data: Any
) -> list[Change]:
    """Publish a product to every store; ``data`` may carry ``category`` and ``cost``
    (``check_product_goods``) besides the till's product flags."""
    data = check_product_goods(data)
    now = utcnow()
    with db.atomic():
        Product.insert(sku=sku, name=name, unit_price=unit_price, data=data).on_conflict(
            conflict_target=[Product.sku],
            update={Product.name: name, Product.unit_price: unit_price, Product.data: data},
        ).execute()
        changes = ChangeSet()
        changes.add("product", sku, {"sku": sku, "name": name, "unit_price": unit_price, **data})
        return flush_changes(db, changes, now)
