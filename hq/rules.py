"""Publishing programme rules, products, card types and tiers (offline policies: hq/offline.py).

Each writes the row and its change record in one transaction; the worker's next
push or a store's next page carries it down."""

from __future__ import annotations

from typing import Any

import peewee as pw

from core.protocol import Change
from core.rules import Rules
from hq.changes import ChangeSet, flush_changes
from hq.models import CardType, Product, RulesVersion, Tier, utcnow


def publish_rules(db: pw.Database, document: dict[str, Any]) -> list[Change]:
    """Validate a rules document (``Rules.from_dict``) and publish it as its version."""
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


def publish_product(
    db: pw.Database, sku: str, name: str, unit_price: int, **data: Any
) -> list[Change]:
    now = utcnow()
    with db.atomic():
        Product.insert(sku=sku, name=name, unit_price=unit_price, data=data).on_conflict(
            conflict_target=[Product.sku],
            update={Product.name: name, Product.unit_price: unit_price, Product.data: data},
        ).execute()
        changes = ChangeSet()
        changes.add("product", sku, {"sku": sku, "name": name, "unit_price": unit_price, **data})
        return flush_changes(db, changes, now)
