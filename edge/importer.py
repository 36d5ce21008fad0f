"""Member and product import from CSV or .xlsx.

Each bad row is reported with its row number (as a spreadsheet shows it: the
header is row 1) and reason while the good rows load; re-importing the same
file changes nothing. Headers may be English or Chinese.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import HuiyuanError, ValidationError
from core.money import MoneyError, parse_yuan
from edge.models import Card, Member, Product
from edge.phones import phone_hash
from edge.services import members as member_svc
from edge.services.context import Till
from edge.services.products import search_keys

MEMBER_COLUMNS = {
    "name": ("name", "姓名"),
    "phone": ("phone", "手机号", "手机"),
    "gender": ("gender", "性别"),
    "birthday": ("birthday", "生日"),
    "birthday_calendar": ("birthday_calendar", "历法"),
    "card_no": ("card_no", "卡号"),
    "card_type": ("card_type", "卡类型"),
    "staff_code": ("staff_code", "专属导购", "导购"),
}
PRODUCT_COLUMNS = {
    "sku": ("sku", "商品编码", "编码"),
    "barcode": ("barcode", "条码"),
    "name": ("name", "名称", "商品名称"),
    "price": ("price", "售价", "价格"),
    "promo_price": ("promo_price", "促销价", "特价"),
    "no_member_discount": ("no_member_discount", "不参与会员折扣"),
    "no_points": ("no_points", "不积分"),
    # -- staff: the chain's category code (coupons target it) and the unit cost in yuan
    # (进价, for margin reports); both optional, an empty cost is "not known"
    "category": ("category", "品类", "类别", "分类"),
    "cost": ("cost", "成本", "进价", "成本价"),
}
MAX_CATEGORY_LEN = 32
GENDER_WORDS = {"男": "M", "女": "F", "m": "M", "f": "F", "": ""}
CALENDAR_WORDS = {
    "公历": "solar",
    "阳历": "solar",
    "农历": "lunar",
    "阴历": "lunar",
    "solar": "solar",
    "lunar": "lunar",
    "": "solar",
}
TRUE_WORDS = {"1", "true", "yes", "y", "是", "t"}
FALSE_WORDS = {"0", "false", "no", "n", "否", "f", ""}
CHUNK = 500


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "errors": [{"row": r, "reason": m} for r, m in self.errors],
        }


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number, {header: text}) for each data row of a CSV or .xlsx file."""
    path = Path(path)
    if path.suffix.lower() == ".xlsx":
        from openpyxl import load_workbook

        wb = load_workbook(path, read_only=True, data_only=True)
        try:
            rows = wb.active.iter_rows(values_only=True)
            header = [str(h or "").strip() for h in next(rows, ())]
            for number, values in enumerate(rows, start=2):
                if values is None or all(v is None or str(v).strip() == "" for v in values):
                    continue
                yield number, {header[i]: _cell(v) for i, v in enumerate(values) if i < len(header)}
        finally:
            wb.close()
        return
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise ValidationError(f"{path}: 文件编码不是 UTF-8 或 GB18030 (not UTF-8 or GB18030 text)")
    reader = csv.DictReader(io.StringIO(text))
    for number, row in enumerate(reader, start=2):
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        yield (
            number,
            {
                str(k).strip(): (v or "").strip() if isinstance(v, str) else ""
                for k, v in row.items()
                if k
            },
        )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d")
    return str(value).strip()


def _columns(row: dict[str, str], spec: dict[str, tuple[str, ...]]) -> dict[str, str]:
    out = {}
    lowered = {k.lower(): v for k, v in row.items()}
    for key, names in spec.items():
        for name in names:
            if name.lower() in lowered:
                out[key] = lowered[name.lower()]
                break
    return out


def _flag(value: str, name: str) -> bool:
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValidationError(
        f"{name} 须为 是/否 或 1/0, 而不是 {value!r} (must be yes/no)", field=name
    )


def import_products(till: Till, path: Path) -> ImportReport:
    report = ImportReport()
    now = till.now().isoformat(timespec="seconds")
    seen: dict[str, int] = {}
    batch: list[tuple[int, dict[str, Any]]] = []
    for number, row in read_rows(path):
        try:
            data = _product_row(_columns(row, PRODUCT_COLUMNS))
            if data["sku"] in seen:
                raise ValidationError(
                    f"商品编码 {data['sku']} 与第 {seen[data['sku']]} 行重复 "
                    f"(sku repeats row {seen[data['sku']]})",
                    field="sku",
                )
            seen[data["sku"]] = number
            batch.append((number, data))
        except (HuiyuanError, MoneyError) as exc:
            report.errors.append((number, str(exc)))
        if len(batch) >= CHUNK:
            _save_products(till, batch, now, report)
            batch = []
    _save_products(till, batch, now, report)
    return report


def _product_row(cols: dict[str, str]) -> dict[str, Any]:
    sku = cols.get("sku", "")
    if not sku:
        raise ValidationError("商品编码为空 (sku is empty)", field="sku")
    name = cols.get("name", "")
    if not name:
        raise ValidationError("名称为空 (name is empty)", field="name")
    if not cols.get("price"):
        raise ValidationError("售价为空 (price is empty)", field="price")
    price = parse_yuan(cols["price"])
    promo = parse_yuan(cols["promo_price"]) if cols.get("promo_price") else None
    if price < 0 or (promo is not None and promo < 0):
        raise ValidationError("价格不能为负 (prices must not be negative)", field="price")
    if promo is not None and promo >= price:
        raise ValidationError(
            f"促销价 {cols['promo_price']} 不低于售价 {cols['price']}"
            " (promo_price must be below price)",
            field="promo_price",
        )
    # a file without the category or cost column leaves what the product has (from HQ)
    goods: dict[str, Any] = {}
    if "category" in cols:
        goods["category"] = cols["category"].strip()
        if len(goods["category"]) > MAX_CATEGORY_LEN:
            raise ValidationError(
                f"品类过长, 最多 {MAX_CATEGORY_LEN} 个字符 (category: at most {MAX_CATEGORY_LEN})",
                field="category",
            )
    if "cost" in cols:
        goods["cost"] = _cost(cols["cost"])
    return {
        "sku": sku,
        "barcode": cols.get("barcode") or None,
        "name": name,
        "price": int(price),
        "promo_price": int(promo) if promo is not None else None,
        "no_member_discount": _flag(cols.get("no_member_discount", ""), "no_member_discount"),
        "no_points": _flag(cols.get("no_points", ""), "no_points"),
        **goods,
    }


def _cost(text: str) -> int | None:
    """The cost column: yuan as the price is written (``12.50``), to fen; empty is None
    (not known). A negative or unreadable cost is the row's error."""
    text = text.strip()
    if not text:
        return None
    try:
        cost = parse_yuan(text)
    except MoneyError:
        raise ValidationError(
            f"成本 {text!r} 不是金额 (cost must be yuan with at most two decimals, e.g. 12.50)",
            field="cost",
        ) from None
    if cost < 0:
        raise ValidationError(f"成本不能为负 (cost must not be negative): {text}", field="cost")
    return int(cost)


def _save_products(
    till: Till, batch: list[tuple[int, dict[str, Any]]], now: str, report: ImportReport
) -> None:
    if not batch:
        return
    with till.db.atomic():
        for number, data in batch:
            existing = Product.get_or_none(Product.sku == data["sku"])
            if data["barcode"]:
                other = Product.get_or_none(
                    (Product.barcode == data["barcode"]) & (Product.sku != data["sku"])
                )
                if other is not None:
                    report.errors.append(
                        (
                            number,
                            f"条码 {data['barcode']} 已属于商品 {other.sku} "
                            f"(barcode already belongs to sku {other.sku})",
                        )
                    )
                    continue
            if existing is None:
                Product.create(updated_at=now, **data, **search_keys(data["name"]))
                report.added += 1
            elif all(getattr(existing, k) == v for k, v in data.items()) and existing.active:
                report.unchanged += 1
            else:
                Product.update(
                    updated_at=now, active=True, **data, **search_keys(data["name"])
                ).where(Product.sku == data["sku"]).execute()
                report.updated += 1


def import_members(till: Till, path: Path, cashier: str = "import") -> ImportReport:
    """New members by phone; a phone already known locally is left as it is."""
    report = ImportReport()
    card_types = set(till.rules().card_type_discount) or None
    seen_phones: dict[str, int] = {}
    seen_cards: dict[str, int] = {}
    for number, row in read_rows(path):
        try:
            cols = _columns(row, MEMBER_COLUMNS)
            gender = GENDER_WORDS.get(cols.get("gender", "").strip().lower())
            if gender is None:
                raise ValidationError(
                    f"性别须为 男/女/M/F, 而不是 {cols['gender']!r} (gender)", field="gender"
                )
            calendar = CALENDAR_WORDS.get(cols.get("birthday_calendar", "").strip().lower())
            if calendar is None:
                raise ValidationError(
                    f"历法须为 公历/农历, 而不是 {cols['birthday_calendar']!r} (birthday_calendar)",
                    field="birthday_calendar",
                )
            reg = member_svc.Registration.from_request(
                {
                    "name": cols.get("name"),
                    "phone": cols.get("phone", ""),
                    "gender": gender,
                    "birthday": cols.get("birthday") or None,
                    "birthday_calendar": calendar,
                    "card_no": cols.get("card_no") or None,
                    "card_type": cols.get("card_type") or None,
                    "staff_code": cols.get("staff_code") or None,
                },
                card_types,
            )
            if reg.phone in seen_phones:
                raise ValidationError(
                    f"手机号与第 {seen_phones[reg.phone]} 行重复 "
                    f"(phone repeats row {seen_phones[reg.phone]})",
                    field="phone",
                )
            seen_phones[reg.phone] = number
            if reg.card_no:
                if reg.card_no in seen_cards:
                    raise ValidationError(
                        f"卡号 {reg.card_no} 与第 {seen_cards[reg.card_no]} 行重复 "
                        f"(card_no repeats row {seen_cards[reg.card_no]})",
                        field="card_no",
                    )
                seen_cards[reg.card_no] = number
            existing = Member.get_or_none(Member.phone_hash == phone_hash(till.keys, reg.phone))
            if existing is not None:
                card_ok = not reg.card_no or Card.get_or_none(
                    (Card.card_no == reg.card_no) & (Card.member_id == existing.id)
                )
                if not card_ok:
                    raise ValidationError(
                        f"手机号已登记为会员, 卡号 {reg.card_no} 未添加 "
                        "(phone already registered with another card)",
                        field="card_no",
                    )
                report.unchanged += 1
                continue
            member_svc.register(till, reg, cashier)
            report.added += 1
        except HuiyuanError as exc:
            report.errors.append((number, exc.message))
    return report
