"""The chain's marketing thresholds, held in ``marketing_setting`` (a missing row is the
default). The defaults come from the chain's articles (/work/shared/seeds, docs/marketing.md):

- 新会员: registered in the last 30 days (seeds/000: each month's new members are thanked).
- 沉睡会员: no purchase in 3 months (90 days; seeds/000 and 003).
- 流失会员: no purchase in 6 months (180 days; seeds/003 calls a member at 6 months).
- the behaviour windows (four quadrants, RFM, home store, category bought): 12 months.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import peewee as pw

from core.errors import ValidationError
from hq.models import MarketingSetting


@dataclass(frozen=True)
class Setting:
    name: str
    zh: str
    default: int
    low: int
    high: int


SETTINGS: tuple[Setting, ...] = (
    Setting("new_days", "新会员: 注册不超过天数", 30, 1, 366),
    Setting("dormant_days", "沉睡会员: 未消费天数", 90, 7, 1095),
    Setting("lost_days", "流失会员: 未消费天数", 180, 14, 1825),
    Setting("window_months", "消费行为统计窗口 (月): 四象限、RFM、常去门店、购买品类", 12, 1, 36),
    Setting("weekly_call_days", "周回访: 首次消费后第几天回访", 7, 1, 60),
    # -- campaigns: quiet hours (chain local time, no message from start to end) and the
    # per-member cap across campaigns (at most N campaigns' messages within D days)
    Setting("quiet_start_hour", "免打扰开始 (点)", 21, 0, 23),
    Setting("quiet_end_hour", "免打扰结束 (点)", 9, 0, 23),
    Setting("cap_campaigns", "每位会员最多收到的活动数", 2, 1, 30),
    Setting("cap_days", "上述限制的天数", 7, 1, 90),
)
BY_NAME = {s.name: s for s in SETTINGS}


def current(db: pw.Database) -> dict[str, int]:
    """Every threshold: the chain's value, or the default."""
    values = {s.name: s.default for s in SETTINGS}
    for row in MarketingSetting.select():
        if row.name in values:
            values[row.name] = int(row.value)
    return values


def update(
    db: pw.Database, changes: dict[str, object], by: str, now: dt.datetime
) -> dict[str, int]:
    """Set some thresholds (each checked against its range); returns them all."""
    if not isinstance(changes, dict) or not changes:
        raise ValidationError("请给出要修改的阈值 (send an object of thresholds)", field="settings")
    checked: dict[str, int] = {}
    for name, value in changes.items():
        setting = BY_NAME.get(name)
        if setting is None:
            raise ValidationError(f"未知的阈值: {name} (unknown setting)", field=str(name)[:48])
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{setting.zh} 须为整数 ({name} must be an integer)", field=name)
        if not setting.low <= value <= setting.high:
            raise ValidationError(
                f"{setting.zh} 须在 {setting.low} 到 {setting.high} 之间"
                f" ({name} must be {setting.low}..{setting.high})",
                field=name,
            )
        checked[name] = value
    merged = {**current(db), **checked}
    if merged["lost_days"] <= merged["dormant_days"]:
        raise ValidationError(
            "流失天数须大于沉睡天数 (lost_days must be more than dormant_days)", field="lost_days"
        )
    with db.atomic():
        for name, value in checked.items():
            MarketingSetting.insert(
                name=name, value=value, updated_by=by, updated_at=now
            ).on_conflict(
                conflict_target=[MarketingSetting.name],
                update={
                    MarketingSetting.value: value,
                    MarketingSetting.updated_by: by,
                    MarketingSetting.updated_at: now,
                },
            ).execute()
    return merged
