"""Follow-up calls (回访): their kinds and a call's outcome as a person enters it, checked
the same way at the till and in HQ's console (docs/followups.md)."""

from __future__ import annotations

import re
from typing import Any

from core.errors import ValidationError

# the kinds of follow-up, as the screens name them; ``complaint`` is made by HQ when a
# call's outcome carries a complaint (assigned to the maintainer's store manager)
KINDS: dict[str, str] = {
    "new_member": "新会员回访",
    "service_sale": "服务回访",
    "regular": "常客月度回访",
    "slipping": "常客下滑回访",
    "dormant": "沉睡会员回访",
    "complaint": "投诉处理",
}

MAX_TEXT = 500  # what the member said, a complaint, a request
OUTCOME_TEXTS = {"said": "会员反馈", "complaint": "投诉", "request": "需求"}
_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


def check_outcome(data: dict[str, Any]) -> dict[str, Any]:
    """A call's outcome as entered: ``outcome_id`` (UUID), ``reached`` (bool),
    ``satisfaction`` (1..5 or null; none when not reached), ``said``, ``complaint`` and
    ``request`` (texts, "" for none; no complaint or request when not reached). Returns
    it normalised; a bad field is a ValidationError naming it, Chinese first."""
    outcome_id = data.get("outcome_id")
    if not isinstance(outcome_id, str) or not _UUID_RE.match(outcome_id):
        raise ValidationError(
            "回访记录编号须为UUID (outcome_id must be a UUID)", field="outcome_id"
        )
    reached = data.get("reached")
    if not isinstance(reached, bool):
        raise ValidationError(
            "请选择是否联系上会员 (reached must be true or false)", field="reached"
        )
    satisfaction = data.get("satisfaction")
    if satisfaction is not None and (
        isinstance(satisfaction, bool)
        or not isinstance(satisfaction, int)
        or not 1 <= satisfaction <= 5
    ):
        raise ValidationError(
            "满意度须为1到5分, 或不填 (satisfaction: 1..5 or null)", field="satisfaction"
        )
    if not reached and satisfaction is not None:
        raise ValidationError(
            "未联系上会员, 不能填写满意度 (no satisfaction when not reached)",
            field="satisfaction",
        )
    texts = {}
    for name, label in OUTCOME_TEXTS.items():
        value = data.get(name)
        value = "" if value is None else value
        if not isinstance(value, str):
            raise ValidationError(f"{label}须为文字 ({name} must be a text)", field=name)
        value = value.strip()
        if len(value) > MAX_TEXT:
            raise ValidationError(
                f"{label}太长: 最多 {MAX_TEXT} 个字 ({name}: at most {MAX_TEXT} characters)",
                field=name,
            )
        texts[name] = value
    if not reached and (texts["complaint"] or texts["request"]):
        raise ValidationError(
            "未联系上会员, 不能记录投诉或需求 (no complaint or request when not reached)",
            field="reached",
        )
    return {
        "outcome_id": outcome_id.lower(),
        "reached": reached,
        "satisfaction": satisfaction,
    } | texts
