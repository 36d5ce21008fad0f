"""The console's programme setup (会员规则): the rules version in force by section, the
editor with the tills' own parser (core/rules.py) and a diff against the version in
force, publishing (audited, pushed to stores best effort), which stores have taken
which version, offline policies, and store enrolment codes (门店开通码).

The audit log is hq/console/setup_audit.py; accounts and tokens hq/console/setup_users.py.
"""

from __future__ import annotations

import datetime as dt
import difflib
import enum
import json
from dataclasses import fields
from typing import Any

import peewee as pw
from flask import Blueprint, current_app, redirect, request, url_for

from core.errors import HuiyuanError, ValidationError
from core.money import MoneyError
from core.protocol import BALANCE_KINDS, OFFLINE_MODES, Change
from core.rules import FIRST_RELEASE_KEYS, Rules
from hq import audit
from hq.access.guard import current, requires
from hq.console import render
from hq.models import RulesVersion, Store, utcnow
from hq.rules import check_first_release_types, is_whole_number

bp = Blueprint("setup", __name__)

MAX_DOCUMENT = 256 * 1024  # characters of the JSON a publisher may paste
MAX_VERSION = 2**31 - 1
RULES_LOCK = 0x68795275  # the advisory lock key that serializes publishing on PostgreSQL

# the sections of the rules document as the console shows them: (title, keys); a key
# not named here (one a later release adds) is shown under 其他
SECTIONS: list[tuple[str, tuple[str, ...]]] = [
    ("卡类型 (card types)", ("card_type_discount", "cards")),
    ("等级与成长值 (tiers)", ("tier_discount", "tiers")),
    (
        "积分 (points)",
        (
            "points_per_yuan",
            "promo_earns_points",
            "points_per_yuan_redeemed",
            "points_expiry_days",
            "points_reset_date",
            "points_lock_days",
            "points_redemption_windows",
            "referral_points",
        ),
    ),
    (
        "会员日 (member day)",
        (
            "member_day_weekdays",
            "member_day_month_days",
            "member_day_points_multiplier",
            "member_day_discount",
        ),
    ),
    (
        "充值赠送与储值 (top-up bonuses, stored value)",
        ("topup_bonuses", "stored_value_spend", "sv_refund_bonus"),
    ),
    ("价格 (pricing)", ("promo_excludes_member_discount", "rounding")),
    ("券与资料 (coupons, profile)", ("new_member_coupon", "profile_fields")),
]

LABELS: dict[str, str] = {
    "version": "版本号",
    "card_type_discount": "卡类型会员价 (‰, 1000 为不打折)",
    "cards": "卡产品与升级",
    "tier_discount": "等级会员价 (‰)",
    "tiers": "等级阶梯与成长值",
    "points_per_yuan": "每元积分 (按卡类型, * 为默认)",
    "promo_earns_points": "特价商品积分",
    "points_per_yuan_redeemed": "多少积分抵 1 元",
    "points_expiry_days": "积分有效天数",
    "points_reset_date": "积分清零日 (MM-DD)",
    "points_lock_days": "积分锁定天数",
    "points_redemption_windows": "积分兑换时段",
    "referral_points": "推荐人积分",
    "member_day_weekdays": "会员日 (星期, 0=周一)",
    "member_day_month_days": "会员日 (每月几号)",
    "member_day_points_multiplier": "会员日积分倍数",
    "member_day_discount": "会员日会员价 (‰)",
    "topup_bonuses": "充值赠送 [门槛分, 赠送分]",
    "stored_value_spend": "储值扣款顺序",
    "sv_refund_bonus": "退储值时赠送金",
    "promo_excludes_member_discount": "特价商品不再打会员折",
    "rounding": "抹零",
    "new_member_coupon": "新人券模板",
    "profile_fields": "自定义资料字段",
}

POLICY_MODES = {"online_only": "仅在线 (离线拒绝)", "floor_limit": "离线限额"}
KIND_LABELS = {"stored_value": "储值 (分)", "points": "积分", "coupons": "券 (张)"}


# ---- the rules documents


def _plain(value: Any) -> Any:
    """A rules field as JSON data (sections by their to_dict, enums by their value)."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def newest_version() -> RulesVersion | None:
    return RulesVersion.select().order_by(RulesVersion.version.desc()).first()


def by_section(rules: Rules) -> list[dict[str, Any]]:
    """Every field of ``rules`` (defaults included), grouped as ``SECTIONS`` says."""
    defaults = Rules()
    written = rules.to_dict()  # the document's own form; later fields only when set
    values = {
        f.name: (
            written[f.name] if f.name in written else _plain(getattr(rules, f.name)),
            getattr(rules, f.name) == getattr(defaults, f.name),
        )
        for f in fields(Rules)
        if f.name != "version"
    }
    out = []
    named: set[str] = set()
    for title, keys in SECTIONS:
        named.update(keys)
        rows = [_field_row(k, *values[k]) for k in keys if k in values]
        out.append({"title": title, "rows": rows})
    rest = [_field_row(k, *v) for k, v in values.items() if k not in named]
    if rest:
        out.append({"title": "其他 (other)", "rows": rest})
    return out


def _field_row(key: str, value: Any, is_default: bool) -> dict[str, Any]:
    return {
        "key": key,
        "label": LABELS.get(key, key),
        "lines": _lines(key, value),
        "default": is_default,
    }


def _fen(fen: Any) -> str:
    from hq.console import yuan

    return yuan(fen) if is_whole_number(fen) else str(fen)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "是" if value else "否"
    if value is None or value == "":
        return "—"
    return str(value)


def _lines(key: str, value: Any, depth: int = 0) -> list[tuple[int, str]]:
    """A value as lines for a person: (indent, text); nesting bounded."""
    if key == "topup_bonuses" and isinstance(value, list):
        if not value:
            return [(depth, "无")]
        return [(depth, f"充 {_fen(t[0])} 送 {_fen(t[1])}") for t in value if len(t) == 2]
    if isinstance(value, dict):
        if not value:
            return [(depth, "无")]
        out: list[tuple[int, str]] = []
        for k, v in value.items():
            if isinstance(v, dict | list) and v and depth < 3:
                out.append((depth, f"{k}:"))
                out.extend(_lines(k, v, depth + 1))
            else:
                out.append(
                    (depth, f"{k}: {_scalar(v) if not isinstance(v, dict | list) else '无'}")
                )
        return out
    if isinstance(value, list):
        if not value:
            return [(depth, "无")]
        if all(not isinstance(v, dict | list) for v in value):
            return [(depth, ", ".join(_scalar(v) for v in value))]
        out = []
        for item in value:
            if isinstance(item, dict) and all(
                not isinstance(v, dict | list) for v in item.values()
            ):
                out.append((depth, "· " + ", ".join(f"{k} {_scalar(v)}" for k, v in item.items())))
            else:
                out.append((depth, "· " + json.dumps(item, ensure_ascii=False)))
        return out
    return [(depth, _scalar(value))]


def _pretty(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True)


def _flatten(value: Any, path: str, out: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """``{"a.b[0].c": leaf}``; depth bounded (documents are validated before a diff)."""
    if depth < 12 and isinstance(value, dict) and value:
        for key in sorted(value):
            _flatten(value[key], f"{path}.{key}" if path else str(key), out, depth + 1)
    elif depth < 12 and isinstance(value, list) and value:
        for i, item in enumerate(value):
            _flatten(item, f"{path}[{i}]", out, depth + 1)
    else:
        out[path] = value
    return out


def diff(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Per-key changes (path, was, now) and the unified diff of the pretty-printed JSON
    (each line with its kind: add, del, hunk, same)."""
    before = _flatten(old or {}, "", {})
    after = _flatten(new, "", {})
    changes = []
    for path in sorted(set(before) | set(after)):
        if path == "version":
            continue
        was, now = before.get(path, _MISSING), after.get(path, _MISSING)
        if _grown_or_emptied(path, was, now, before, after):
            continue  # [] -> [8, 18] shows as its items, not also as the empty list
        if was != now:
            changes.append(
                {
                    "path": path,
                    "was": "—" if was is _MISSING else json.dumps(was, ensure_ascii=False),
                    "now": "—" if now is _MISSING else json.dumps(now, ensure_ascii=False),
                    "kind": "add" if was is _MISSING else "del" if now is _MISSING else "chg",
                }
            )
    lines = []
    old_text = _pretty(old).splitlines() if old is not None else []
    for line in difflib.unified_diff(
        old_text, _pretty(new).splitlines(), "在用版本", "新版本", n=2, lineterm=""
    ):
        if line.startswith(("---", "+++")):
            continue
        kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "same")
        lines.append({"kind": kind, "text": line})
    return {"changes": changes, "lines": lines}


def _grown_or_emptied(
    path: str, was: Any, now: Any, before: dict[str, Any], after: dict[str, Any]
) -> bool:
    """An empty list or object on one side whose items the other side lists."""
    for empty, other, side in ((was, now, after), (now, was, before)):
        if empty in ([], {}) and other is _MISSING:
            return any(k.startswith((f"{path}[", f"{path}.")) for k in side)
    return False


class _Missing:
    def __repr__(self) -> str:
        return "—"


_MISSING = _Missing()


def check_document(text: str, newest: int | None) -> tuple[dict[str, Any], Rules]:
    """The rules document typed in the editor: parsed, checked with the tills' parser
    (``Rules.from_dict``) and numbered above ``newest``. Every refusal is a
    ValidationError naming the field, in Chinese with English in parentheses."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("规则文档为空 (the rules document is empty)", field="document")
    if len(text) > MAX_DOCUMENT:
        raise ValidationError(
            f"规则文档超过 {MAX_DOCUMENT // 1024} KB (the document is too long)", field="document"
        )
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"JSON 格式错误: 第 {exc.lineno} 行第 {exc.colno} 列"
            f" (invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg})",
            field="document",
        ) from None
    except RecursionError:
        raise ValidationError("JSON 嵌套太深 (nested too deep)", field="document") from None
    if not isinstance(document, dict):
        raise ValidationError(
            "规则文档须为 JSON 对象 {...} (the document must be a JSON object)", field="document"
        )
    version = document.get("version")
    if not is_whole_number(version) or not 1 <= version <= MAX_VERSION:
        raise ValidationError(
            "version 须为正整数 (version must be a positive integer)", field="version"
        )
    if newest is not None and version <= newest:
        raise ValidationError(
            f"版本号须大于在用版本 {newest} (version must be above the version in force,"
            f" {newest}): 请改为 {newest + 1}",
            field="version",
        )
    check_first_release_types(document)
    try:
        rules = Rules.from_dict(document)
        normal = rules.to_dict()
        json.dumps(normal)
    except ValidationError as exc:
        where = exc.field or "document"
        raise ValidationError(
            f"字段 {where} 无效 (invalid field {where}): {exc.message}", field=where
        ) from None
    except MoneyError as exc:
        first = str(exc).split(" ", 1)[0]
        where = first if first.split(".", 1)[0] in document else "document"
        raise ValidationError(
            f"字段 {where} 无效 (invalid field {where}): {exc}", field=where
        ) from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise ValidationError(
            f"规则文档格式有误 (malformed rules document): {type(exc).__name__}: {exc}"[:300],
            field="document",
        ) from None
    return normal, rules


def _push(changes: list[Change]) -> bool:
    """Best effort, as the CLI does; stores also page the change log."""
    from hq.cli import push_changes

    return push_changes(current_app.config["HQ"], changes)


def publish(db: pw.Database, text: str, actor: str) -> tuple[int, list[Change]]:
    """Check and publish the editor's document; the version, its change records and the
    audit row commit together."""
    with db.atomic():
        if isinstance(db, pw.PostgresqlDatabase):
            # two publishers of the same next version: the second waits, then is refused
            # (publish_rules would otherwise overwrite the first's document)
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (RULES_LOCK,))
        newest = newest_version()
        was = newest.version if newest else None
        document, rules = check_document(text, was)
        from hq.rules import publish_rules

        changes = publish_rules(db, document)
        audit.record(
            db,
            actor,
            "rules.publish",
            f"rules:{rules.version}",
            was_version=was,
            changes=len(changes),
        )
    return rules.version, changes


def _visible_status(db: pw.Database) -> dict[str, Any]:
    from hq.programme.tiers import rules_status

    me = current()
    status = rules_status(db)
    status["stores"] = [s for s in status["stores"] if me.sees_store(s["store"])]
    names = {s.code: s.name for s in Store.select(Store.code, Store.name)}
    for s in status["stores"]:
        s["name"] = names.get(s["store"], "")
    # the stores that need a look first: refused, then behind, then the rest
    status["stores"].sort(key=lambda s: (s["refused_version"] is None, not s["behind"], s["store"]))
    status["behind"] = sum(1 for s in status["stores"] if s["behind"])
    status["refused"] = sum(1 for s in status["stores"] if s["refused_version"] is not None)
    return status


def _rules_page(status: int = 200, **context: Any) -> Any:
    db = current_app.extensions["hq_db"]
    newest = newest_version()
    rules = Rules.from_dict(newest.data) if newest else None
    store_status = _visible_status(db)
    versions = list(RulesVersion.select().order_by(RulesVersion.version.desc()).limit(20))
    taken: dict[int, int] = {}
    for s in store_status["stores"]:
        if s["version_in_force"] is not None:
            taken[s["version_in_force"]] = taken.get(s["version_in_force"], 0) + 1
    if "editor" not in context:
        start = dict(newest.data) if newest else Rules().to_dict()
        start["version"] = (newest.version + 1) if newest else 1
        context["editor"] = _pretty(start)
    me = current()
    policies = [p for p in _policies() if p["store"] is None or me.sees_store(p["store"])]
    return render(
        "setup_rules.html",
        status,
        newest=newest,
        sections=by_section(rules) if rules else [],
        store_status=store_status,
        versions=versions,
        taken=taken,
        policies=policies,
        kinds=BALANCE_KINDS,
        kind_labels=KIND_LABELS,
        modes=POLICY_MODES,
        first_release=FIRST_RELEASE_KEYS,
        form=_form_values(rules),
        weekday_names=("一", "二", "三", "四", "五", "六", "日"),
        **context,
    )


def _policies() -> list[dict[str, Any]]:
    from hq.offline import list_policies

    return list_policies()


@bp.get("/setup/rules")
@requires("rules.read")
def rules_page() -> Any:
    notice = None
    published = request.args.get("published", "")
    if published.isdigit() and len(published) < 11:
        pushed = request.args.get("pushed") == "1"
        notice = f"规则版本 {published} 已发布" + (
            ", 已推送到门店" if pushed else ", 门店将在下次同步时收到 (not pushed now: broker away)"
        )
    saved = request.args.get("policy", "")
    if saved in ("set", "removed"):
        notice = "离线策略已发布" if saved == "set" else "门店单独策略已删除"
    return _rules_page(notice=notice)


@bp.post("/setup/rules/preview")
@requires("rules.publish")
def rules_preview() -> Any:
    text = request.form.get("document", "")
    newest = newest_version()
    try:
        document, rules = check_document(text, newest.version if newest else None)
    except ValidationError as exc:
        return _rules_page(400, editor=text, problem=exc.message, bad_field=exc.field)
    return _rules_page(
        editor=text,
        preview={
            "version": rules.version,
            "compact": json.dumps(document, ensure_ascii=False, sort_keys=True),
            **diff(newest.data if newest else None, document),
        },
        notice=f"校验通过: 版本 {rules.version} 可以发布 (valid; review the changes, then publish)",
    )


@bp.post("/setup/rules/publish")
@requires("rules.publish")
def rules_publish() -> Any:
    text = request.form.get("document", "")
    db = current_app.extensions["hq_db"]
    try:
        version, changes = publish(db, text, current().actor)
    except ValidationError as exc:
        return _rules_page(400, editor=text, problem=exc.message, bad_field=exc.field)
    pushed = _push(changes)
    return redirect(
        url_for("setup.rules_page", published=version, pushed=int(pushed)),
        303,
    )


@bp.get("/setup/rules/<int:version>")
@requires("rules.read")
def rules_version(version: int) -> Any:
    row = RulesVersion.get_or_none(RulesVersion.version == version)
    if row is None:
        return render(
            "error.html",
            404,
            title="版本不存在",
            message=f"规则版本 {version} 不存在 (no such version)",
        )
    before = (
        RulesVersion.select()
        .where(RulesVersion.version < version)
        .order_by(RulesVersion.version.desc())
        .first()
    )
    return render(
        "setup_rules_version.html",
        row=row,
        before=before,
        document=_pretty(row.data),
        **diff(before.data if before else None, row.data),
    )


# ---- per-section forms: a few fields edited without JSON, then the same preview

MAX_ROWS = 50
SECTION_FORMS = ("tiers", "member_day", "topup", "card_types")


def _fen_of(text: str, name: str) -> int:
    """Yuan as typed (500, 500.5, 500.50) as integer fen."""
    text = text.strip().replace(",", "").removeprefix("¥")
    whole, _, cents = text.partition(".")
    if not whole.isdigit() or len(whole) > 9 or len(cents) > 2 or (cents and not cents.isdigit()):
        raise ValidationError(
            f"{name} 须为金额(元, 最多两位小数) ({name} must be yuan, at most 2 decimals)",
            field=name,
        )
    return int(whole) * 100 + int(cents.ljust(2, "0") or 0)


def _count(text: str, name: str, lo: int = 0, hi: int = 10**9) -> int:
    text = text.strip()
    if not text.isdigit() or len(text) > 10 or not lo <= int(text) <= hi:
        raise ValidationError(
            f"{name} 须为 {lo}..{hi} 的整数 ({name} must be a whole number {lo}..{hi})",
            field=name,
        )
    return int(text)


def _rows(form: Any, *names: str) -> list[tuple[str, ...]]:
    """The form's repeated columns zipped into rows; rows left blank are dropped."""
    columns = [form.getlist(n)[:MAX_ROWS] for n in names]
    width = max((len(c) for c in columns), default=0)
    rows = []
    for i in range(width):
        row = tuple((c[i] if i < len(c) else "").strip() for c in columns)
        if any(row):
            rows.append(row)
    return rows


def _section_edit(section: str, form: Any, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with one section replaced by what the form says."""
    doc = json.loads(json.dumps(base))
    if section == "tiers":
        ladder = [
            {"name": name, "threshold": _count(threshold, f"tiers.ladder[{i}].threshold")}
            for i, (name, threshold) in enumerate(_rows(form, "rung_name", "rung_threshold"))
        ]
        tiers = dict(doc.get("tiers", {}))
        tiers["ladder"] = ladder
        doc["tiers"] = tiers
        doc["schema"] = max(doc.get("schema", 1), 2)
        doc["tier_discount"] = {
            name: _count(rate, f"tier_discount.{name}", 0, 1000)
            for name, rate in _rows(form, "tier_name", "tier_rate")
        }
    elif section == "member_day":
        weekdays = sorted({_count(d, "member_day_weekdays", 0, 6) for d in form.getlist("weekday")})
        month_text = form.get("month_days", "").replace("，", ",")
        month_days = sorted(
            {_count(d, "member_day_month_days", 1, 31) for d in month_text.split(",") if d.strip()}
        )
        doc["member_day_weekdays"] = weekdays
        doc["member_day_month_days"] = month_days
        doc["member_day_points_multiplier"] = _count(
            form.get("multiplier", ""), "member_day_points_multiplier", 1, 100
        )
        rate = _count(form.get("day_rate", ""), "member_day_discount", 0, 1000)
        doc["member_day_discount"] = rate
        if rate != 1000:
            doc["schema"] = max(doc.get("schema", 1), 2)
    elif section == "topup":
        doc["topup_bonuses"] = sorted(
            [_fen_of(t, f"topup_bonuses[{i}]"), _fen_of(b, f"topup_bonuses[{i}]")]
            for i, (t, b) in enumerate(_rows(form, "topup_threshold", "topup_bonus"))
        )
    elif section == "card_types":
        doc["card_type_discount"] = {
            name: _count(rate, f"card_type_discount.{name}", 0, 1000)
            for name, rate in _rows(form, "card_name", "card_rate")
        }
    else:
        raise ValidationError(
            f"栏目须为 {'/'.join(SECTION_FORMS)} 之一 (unknown section)", field="section"
        )
    return doc


def _form_values(rules: Rules | None) -> dict[str, Any]:
    """What the per-section forms start with: the version in force."""
    rules = rules or Rules()
    return {
        "ladder": [step.to_dict() for step in rules.tiers.ladder],
        "tier_discount": dict(rules.tier_discount),
        "weekdays": set(rules.member_day_weekdays),
        "month_days": ", ".join(str(d) for d in rules.member_day_month_days),
        "multiplier": rules.member_day_points_multiplier,
        "day_rate": rules.member_day_discount,
        "topup": [(t.threshold, t.bonus) for t in rules.topup_bonuses],
        "card_types": dict(rules.card_type_discount),
    }


@bp.post("/setup/rules/section")
@requires("rules.publish")
def rules_section() -> Any:
    newest = newest_version()
    base = dict(newest.data) if newest else Rules().to_dict()
    base["version"] = (newest.version + 1) if newest else 1
    try:
        document = _section_edit(request.form.get("section", ""), request.form, base)
    except ValidationError as exc:
        return _rules_page(400, problem=exc.message, bad_field=exc.field)
    text = _pretty(document)
    try:
        normal, rules = check_document(text, newest.version if newest else None)
    except ValidationError as exc:
        return _rules_page(400, editor=text, problem=exc.message, bad_field=exc.field)
    return _rules_page(
        editor=_pretty(normal),
        preview={
            "version": rules.version,
            "compact": json.dumps(normal, ensure_ascii=False, sort_keys=True),
            **diff(newest.data if newest else None, normal),
        },
        notice=f"校验通过: 版本 {rules.version} 可以发布 (valid; review the changes, then publish)",
    )


# ---- offline policies


def _int_field(text: str | None, name: str, label: str) -> int:
    text = (text or "").strip()
    if not text:
        return 0
    if not text.isdigit() or len(text) > 12:
        raise ValidationError(f"{label}须为非负整数 ({name} must be a whole number)", field=name)
    return int(text)


@bp.post("/setup/offline")
@requires("rules.publish")
def offline_set() -> Any:
    from hq.offline import set_policy

    form = request.form
    db = current_app.extensions["hq_db"]
    try:
        mode = form.get("mode", "")
        if mode not in OFFLINE_MODES:
            raise ValidationError(
                f"模式须为 {'/'.join(OFFLINE_MODES)} 之一 (mode must be one of {OFFLINE_MODES})",
                field="mode",
            )
        kind = form.get("kind", "")
        if kind not in BALANCE_KINDS:
            raise ValidationError(
                f"余额种类须为 {'/'.join(BALANCE_KINDS)} 之一 (kind must be one of {BALANCE_KINDS})",
                field="kind",
            )
        raw: dict[str, Any] = {"kind": kind, "mode": mode}
        if mode == "floor_limit":
            raw["daily_limit"] = _int_field(form.get("daily_limit"), "daily_limit", "每日限额")
        store = (form.get("store") or "").strip() or None
        with db.atomic():
            state, changes = set_policy(db, raw, store=store, by=current().actor)
            audit.record(
                db,
                current().actor,
                "offline_policy.set",
                f"offline_policy:{state['kind']}" + (f"@{store}" if store else ""),
                store=store,
                mode=state["mode"],
                daily_limit=state["daily_limit"],
                version=state["version"],
            )
    except ValidationError as exc:
        return _rules_page(400, problem=exc.message)
    _push(changes)
    return redirect(url_for("setup.rules_page", policy="set", _anchor="offline"), 303)


@bp.post("/setup/offline/remove")
@requires("rules.publish")
def offline_remove() -> Any:
    from hq.offline import remove_store_policy

    form = request.form
    db = current_app.extensions["hq_db"]
    store = (form.get("store") or "").strip() or None
    try:
        with db.atomic():
            state, changes = remove_store_policy(db, form.get("kind"), store, current().actor)
            audit.record(
                db,
                current().actor,
                "offline_policy.remove",
                f"offline_policy:{state['kind']}@{store}",
                store=store,
            )
    except HuiyuanError as exc:
        if exc.http_status >= 500:
            raise
        return _rules_page(exc.http_status, problem=exc.message)
    _push(changes)
    return redirect(url_for("setup.rules_page", policy="removed", _anchor="offline"), 303)


# ---- store enrolment codes (门店开通码)

ENROL_VALID = {
    "1h": dt.timedelta(hours=1),
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
}


def _enrol_page(status: int = 200, **context: Any) -> Any:
    from hq.models import EnrolmentCode

    recent = list(EnrolmentCode.select().order_by(EnrolmentCode.id.desc()).limit(20))
    stores = list(Store.select(Store.code, Store.name).order_by(Store.code).limit(500))
    return render("setup_enrol.html", status, recent=recent, stores=stores, now=utcnow(), **context)


@bp.get("/setup/enrol")
@requires("enrol.create")
def enrol_page() -> Any:
    return _enrol_page()


@bp.post("/setup/enrol")
@requires("enrol.create")
def enrol_create() -> Any:
    from hq.enrol import create_code

    store = (request.form.get("store") or "").strip()
    valid = ENROL_VALID.get(request.form.get("valid", ""))
    if valid is None:
        return _enrol_page(
            400, problem="有效期须为 1h、24h 或 7d 之一 (valid must be 1h, 24h or 7d)"
        )
    db = current_app.extensions["hq_db"]
    now = utcnow()
    try:
        code, row = create_code(db, store, now, valid, current().actor)  # audited there
    except ValidationError as exc:
        return _enrol_page(
            400, problem=f"无法生成开通码 (no code made): {exc.message}", store=store
        )
    return _enrol_page(code=code, code_row=row, store=store)
