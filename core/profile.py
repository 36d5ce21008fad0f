"""A member's richer profile: the fields, their limits, and a data-completeness score.

The till validates what a cashier types (registration, editing) and HQ validates what a
till sends (``validate_wire``) with the same functions, so both sides agree on what a
profile may hold. The fields (docs/programme/upkeep.md, "Richer profile"):

- ``occupation``: text, at most MAX_OCCUPATION characters;
- ``preferences``: a list of at most MAX_LIST_ITEMS texts of at most MAX_ITEM characters;
- ``anniversaries``: at most MAX_ANNIVERSARIES of ``{name, date, calendar}`` (and
  ``leap_month`` for a lunar date in a leap month), the date as a birthday is written
  (YYYY-MM-DD or MM-DD, core.birthday);
- ``notes``: free text, at most MAX_NOTES characters;
- ``tags``: like preferences; the chain's at-risk tags (AT_RISK_TAGS: 投诉 complaint,
  退款 refund) are recognised by ``at_risk``;
- ``extra``: ``{name: value}`` of the chain's own fields, declared in the rules
  (``Rules.profile_fields``): unknown names are refused, each value checked by its type.

The completeness score (``completeness``) is 0..100: the weights in COMPLETENESS_WEIGHTS
of the parts that are filled in, out of the weights that apply (``extra`` counts only when
the chain declares fields, in the share of them filled in).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from core.birthday import CALENDARS, Birthday
from core.errors import ValidationError
from core.rules import ProfileField, Rules

MAX_OCCUPATION = 64  # HQ's column is 64 characters
MAX_NOTES = 500
MAX_LIST_ITEMS = 20
MAX_ITEM = 16
MAX_ANNIVERSARIES = 10
MAX_ANNIVERSARY_NAME = 16
MAX_EXTRA_TEXT = 200
MAX_EXTRA_NUMBER = 10**12

# the chain's tags for members at risk of leaving (a complaint, a refund)
AT_RISK_TAGS = ("投诉", "退款")

# what each part of a profile is worth in the completeness score; name and phone are
# always there (registration requires them), so a bare registration scores 20 of 85
COMPLETENESS_WEIGHTS: dict[str, int] = {
    "name": 10,
    "phone": 10,
    "gender": 10,
    "birthday": 15,
    "occupation": 10,
    "preferences": 10,
    "anniversaries": 10,
    "notes": 5,
    "tags": 5,
    "extra": 15,  # only when the rules declare profile fields
}

# the profile fields a till or HQ may set, besides the registration's own
PROFILE_FIELDS = ("occupation", "preferences", "anniversaries", "notes", "tags", "extra")


def _text(value: Any, field: str, limit: int, label: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{label}须为文字 ({field} must be text)", field=field)
    text = value.strip()
    if len(text) > limit:
        raise ValidationError(
            f"{label}最多 {limit} 个字 ({field} is at most {limit} characters)", field=field
        )
    return text


def check_occupation(value: Any) -> str:
    return _text(value, "occupation", MAX_OCCUPATION, "职业")


def check_notes(value: Any) -> str:
    return _text(value, "notes", MAX_NOTES, "备注")


def check_list(value: Any, field: str, label: str) -> list[str]:
    """A list of short texts: stripped, empty ones dropped, repeats kept once, in order."""
    if not isinstance(value, list):
        raise ValidationError(f"{label}须为文字列表 ({field} must be a list of texts)", field=field)
    if len(value) > MAX_LIST_ITEMS:
        raise ValidationError(
            f"{label}最多 {MAX_LIST_ITEMS} 项 ({field} holds at most {MAX_LIST_ITEMS})",
            field=field,
        )
    out: list[str] = []
    for i, item in enumerate(value):
        text = _text(item, f"{field}[{i}]", MAX_ITEM, label)
        if text and text not in out:
            out.append(text)
    return out


def check_tags(value: Any) -> list[str]:
    return check_list(value, "tags", "标签")


def check_preferences(value: Any) -> list[str]:
    return check_list(value, "preferences", "偏好")


def at_risk(tags: list[str] | None) -> list[str]:
    """The chain's at-risk tags (AT_RISK_TAGS) among a member's tags."""
    return [t for t in AT_RISK_TAGS if t in (tags or [])]


def check_anniversaries(value: Any) -> list[dict[str, Any]]:
    """``[{name, date, calendar, leap_month?}]``: each date a real one of its calendar."""
    if not isinstance(value, list):
        raise ValidationError(
            "纪念日须为列表 (anniversaries must be a list of {name, date, calendar})",
            field="anniversaries",
        )
    if len(value) > MAX_ANNIVERSARIES:
        raise ValidationError(
            f"纪念日最多 {MAX_ANNIVERSARIES} 个 (at most {MAX_ANNIVERSARIES} anniversaries)",
            field="anniversaries",
        )
    out = []
    for i, entry in enumerate(value):
        where = f"anniversaries[{i}]"
        if not isinstance(entry, dict):
            raise ValidationError(
                f"纪念日须为 {{name, date, calendar}} ({where} must be an object)", field=where
            )
        unknown = set(entry) - {"name", "date", "calendar", "leap_month"}
        if unknown:
            raise ValidationError(
                f"纪念日不认识的字段 {sorted(map(str, unknown))} ({where}: unknown keys)",
                field=where,
            )
        name = _text(entry.get("name"), f"{where}.name", MAX_ANNIVERSARY_NAME, "纪念日名称")
        if not name:
            raise ValidationError(
                f"纪念日名称不能为空 ({where}.name is empty)", field=f"{where}.name"
            )
        calendar = entry.get("calendar", "solar")
        if calendar not in CALENDARS:
            raise ValidationError(
                f"纪念日历法须为 solar 或 lunar ({where}.calendar must be solar or lunar)",
                field=f"{where}.calendar",
            )
        leap = entry.get("leap_month", False)
        if not isinstance(leap, bool) or (leap and calendar != "lunar"):
            raise ValidationError(
                f"闰月只用于农历 ({where}.leap_month must be a boolean, true only for lunar)",
                field=f"{where}.leap_month",
            )
        date = entry.get("date")
        if not isinstance(date, str) or len(date) > 10:
            raise ValidationError(
                f"纪念日日期须为 YYYY-MM-DD 或 MM-DD ({where}.date)", field=f"{where}.date"
            )
        try:
            day = Birthday.parse(date, calendar, leap)
        except ValidationError as exc:
            raise ValidationError(f"{where}: {exc.message}", field=f"{where}.date") from None
        text = (f"{day.year:04d}-" if day.year else "") + f"{day.month:02d}-{day.day:02d}"
        row: dict[str, Any] = {"name": name, "date": text, "calendar": calendar}
        if leap:
            row["leap_month"] = True
        out.append(row)
    return out


def check_extra(
    value: Any, declared: tuple[ProfileField, ...], *, require: bool = False
) -> dict[str, Any]:
    """The chain's own fields, against their declaration in the rules: unknown names are
    refused by name, each value by its type; with ``require``, every required field must
    have a value. An empty value (``""`` or null) removes the field."""
    if not isinstance(value, dict):
        raise ValidationError("自定义资料须为对象 (extra must be an object)", field="extra")
    fields = {f.name: f for f in declared}
    unknown = sorted(str(k)[:32] for k in value if k not in fields)
    if unknown:
        raise ValidationError(
            f"未定义的自定义资料 {unknown} (extra names fields the rules do not declare: "
            f"{unknown}; declared: {sorted(fields)})",
            field="extra",
        )
    out: dict[str, Any] = {}
    for name, raw in value.items():
        f = fields[name]
        where = f"extra.{name}"
        label = f.label or name
        if raw is None or raw == "":
            continue
        if f.type == "number":
            if isinstance(raw, bool) or not isinstance(raw, int) or abs(raw) > MAX_EXTRA_NUMBER:
                raise ValidationError(f"{label}须为整数 ({where} must be an integer)", field=where)
            out[name] = raw
        elif f.type == "date":
            try:
                out[name] = dt.date.fromisoformat(raw).isoformat() if isinstance(raw, str) else None
            except ValueError:
                out[name] = None
            if out[name] is None or len(raw) != 10:
                raise ValidationError(f"{label}须为日期 YYYY-MM-DD ({where})", field=where)
        elif f.type == "choice":
            if raw not in f.choices:
                raise ValidationError(
                    f"{label}须为 {list(f.choices)} 之一 ({where} must be one of the choices)",
                    field=where,
                )
            out[name] = raw
        else:
            text = _text(raw, where, MAX_EXTRA_TEXT, label)
            if text:
                out[name] = text
    if require:
        missing = [f.name for f in declared if f.required and f.name not in out]
        if missing:
            raise ValidationError(
                f"必填的自定义资料未填: {missing} (required extra fields missing)",
                field=f"extra.{missing[0]}",
            )
    return out


_CHECKS = {
    "occupation": check_occupation,
    "preferences": check_preferences,
    "anniversaries": check_anniversaries,
    "notes": check_notes,
    "tags": check_tags,
}


def check_profile(
    data: Mapping[str, Any], rules: Rules, *, registration: bool = False
) -> dict[str, Any]:
    """The PROFILE_FIELDS ``data`` names, checked and normalised (others are not looked at).
    A registration must give the rules' required extra fields."""
    out: dict[str, Any] = {}
    for name, check in _CHECKS.items():
        if name in data and data[name] is not None:
            out[name] = check(data[name])
    if "extra" in data and data["extra"] is not None:
        out["extra"] = check_extra(data["extra"], rules.profile_fields, require=registration)
    elif registration and any(f.required for f in rules.profile_fields):
        check_extra({}, rules.profile_fields, require=True)
    return out


def completeness(member: Mapping[str, Any], rules: Rules) -> int:
    """0..100: the weights (COMPLETENESS_WEIGHTS) of what is filled in, out of those that
    apply. ``member`` holds the profile as the models keep it (name, phone or its tail,
    gender, birthday, and PROFILE_FIELDS)."""
    weights = COMPLETENESS_WEIGHTS
    got = 0
    possible = sum(w for name, w in weights.items() if name != "extra")
    for name in ("name", "gender", "birthday", "occupation", "notes"):
        if member.get(name):
            got += weights[name]
    if member.get("phone") or member.get("phone_tail") or member.get("phone_hash"):
        got += weights["phone"]
    for name in ("preferences", "anniversaries", "tags"):
        if member.get(name):
            got += weights[name]
    declared = rules.profile_fields
    if declared:
        possible += weights["extra"]
        extra = member.get("extra") or {}
        filled = sum(1 for f in declared if extra.get(f.name) not in (None, ""))
        got += weights["extra"] * filled // len(declared)
    return (got * 100 + possible // 2) // possible
