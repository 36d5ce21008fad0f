"""Products at the till: what the scan box finds (a barcode or SKU exactly, else a part of
the name, its pinyin or the pinyin's initials: ``nfsq`` finds 农夫山泉)."""

from __future__ import annotations

from typing import Any

from core.names import pinyin_keys
from edge.models import Product

SEARCH_LIMIT = 50
# fill at most this many rows lacking search keys per search (rows written before the
# columns existed, or by a writer that does not set them): the first searches catch up
BACKFILL_BATCH = 2000


def search_keys(name: str) -> dict[str, str]:
    """The columns a product's name is found by; every writer of a product sets them."""
    full, initials = pinyin_keys(name or "", person=False)
    return {"name_pinyin": full[:255], "name_initials": initials[:255]}


def backfill_search_keys(limit: int = BACKFILL_BATCH) -> int:
    """Write the search keys of products that have none; returns how many were written."""
    rows = list(
        Product.select(Product.sku, Product.name).where(Product.name_pinyin.is_null()).limit(limit)
    )
    with Product._meta.database.atomic():
        for row in rows:
            Product.update(**search_keys(row.name)).where(Product.sku == row.sku).execute()
    return len(rows)


def search(q: str) -> tuple[Product | None, list[Product]]:
    """(the active product whose SKU or barcode is exactly ``q``, or None; the active
    products matching ``q``: that one alone, else by part of the name, pinyin or initials)."""
    active = Product.active == True  # noqa: E712
    query = Product.select().where(active)
    q = q.strip()
    if not q:
        return None, list(query.order_by(Product.sku).limit(SEARCH_LIMIT))
    exact = Product.get_or_none(active & (Product.sku == q)) or Product.get_or_none(
        active & (Product.barcode == q)
    )
    if exact is not None:  # a scan: two index lookups, nothing else
        return exact, [exact]
    backfill_search_keys()
    key = "".join(ch for ch in q.lower() if ch.isalnum() and ch.isascii())
    match = Product.name.contains(q)
    if key and key == q.lower().replace(" ", ""):  # letters and digits only: pinyin too
        match |= Product.name_initials.contains(key) | Product.name_pinyin.contains(key)
    return None, list(query.where(match).order_by(Product.sku).limit(SEARCH_LIMIT))


def product_dict(p: Product) -> dict[str, Any]:
    return {
        "sku": p.sku,
        "barcode": p.barcode,
        "name": p.name,
        "price": p.price,
        "promo_price": p.promo_price,
        "no_member_discount": p.no_member_discount,
        "no_points": p.no_points,
    }
