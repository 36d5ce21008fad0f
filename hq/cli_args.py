"""Arguments the HQ commands share (hq/cli*.py)."""

from __future__ import annotations

import datetime as dt

from core.errors import ValidationError


def parse_day(value: str | None, name: str) -> dt.date | None:
    """The value of the option ``name`` (``--from``, ``--until``, ...): YYYY-MM-DD, or None
    when not given."""
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"{name} 须为日期 YYYY-MM-DD (must be a date YYYY-MM-DD), got {value!r}", field=name
        ) from None
