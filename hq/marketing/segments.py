"""Saved segments: a name and an AND of audience conditions (hq/marketing/audience.py),
checked when saved, counted live."""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw

from core.errors import NotFound, ValidationError
from hq.marketing import audience, settings
from hq.models import Segment


def check(db: pw.Database, name: Any, conditions: Any, today: dt.date) -> tuple[str, list[Any]]:
    """A segment's name and conditions, as they will be saved (the conditions compile)."""
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 64:
        raise ValidationError("分群名称须为1到64个字 (name: 1..64 characters)", field="name")
    if not isinstance(conditions, list) or not conditions:
        raise ValidationError(
            "请至少添加一个条件 (a segment needs a condition)", field="conditions"
        )
    audience.compile_spec(db, {"conditions": conditions}, settings.current(db), today)
    return name.strip(), conditions


def save(
    db: pw.Database,
    body: Any,
    by: str,
    now: dt.datetime,
    today: dt.date,
    segment_id: int | None = None,
) -> Segment:
    if not isinstance(body, dict):
        raise ValidationError("请求须为 JSON 对象 (send a JSON object)", field="body")
    name, conditions = check(db, body.get("name"), body.get("conditions"), today)
    clash = Segment.get_or_none(Segment.name == name)
    if clash is not None and clash.id != segment_id:
        raise ValidationError(f"已有同名分群: {name} (a segment of that name exists)", field="name")
    with db.atomic():
        if segment_id is None:
            return Segment.create(
                name=name, conditions=conditions, created_by=by, created_at=now, updated_at=now
            )
        seg = get(segment_id)
        seg.name, seg.conditions, seg.updated_at = name, conditions, now
        seg.save()
        return seg


def get(segment_id: int) -> Segment:
    seg = Segment.get_or_none(Segment.id == segment_id)
    if seg is None:
        raise NotFound(f"分群不存在: {segment_id} (no such segment)", field="segment")
    return seg


def all_segments() -> list[Segment]:
    return list(Segment.select().order_by(Segment.name))


def summary(conditions: list[Any]) -> str:
    """The conditions in words for the screen: 生命周期: 沉睡会员 且 门店 (开卡): S001."""
    parts = []
    for c in conditions:
        kind = c.get("kind")
        named = {
            "lifecycle": audience.LIFECYCLE,
            "quadrant": audience.QUADRANTS,
            "list": audience.LISTS,
        }
        if kind == "rfm":
            text = " ".join(
                f"{k.upper()}={','.join(map(str, c[k]))}" for k in ("r", "f", "m") if k in c
            )
        elif kind == "list":
            text = f"{audience.LISTS.get(c.get('list'), c.get('list'))} {c.get('month') or c.get('week')}"
        else:
            text = ", ".join(str(named.get(kind, {}).get(v, v)) for v in c.get("values", []))
        label = audience.KINDS.get(kind, kind)
        if kind == "store":
            label += " (常去)" if c.get("by") == "home" else " (开卡)"
        if c.get("months"):
            label += f" [{c['months']}个月]"
        parts.append(f"{label}: {text}")
    return " 且 ".join(parts)


def as_dict(seg: Segment, count: int | None = None) -> dict[str, Any]:
    out = {
        "id": seg.id,
        "name": seg.name,
        "conditions": seg.conditions,
        "summary": summary(seg.conditions),
        "created_by": seg.created_by,
        "created_at": seg.created_at.isoformat(timespec="seconds"),
        "updated_at": seg.updated_at.isoformat(timespec="seconds"),
    }
    if count is not None:
        out["count"] = count
    return out
