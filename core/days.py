"""Days as people type them: a command's option or a query parameter (YYYY-MM-DD)."""

from __future__ import annotations

import datetime as dt

from core.errors import ValidationError


def parse_day(value: str | None, name: str) -> dt.date | None:
    """The value of the option or parameter ``name`` (``--from``, ``to``, ...): YYYY-MM-DD,
    or None when not given; refused by name otherwise."""
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"{name} 须为日期 YYYY-MM-DD (must be a date YYYY-MM-DD), got {value!r}", field=name
        ) from None
