"""A report as a table, and that table as an Excel workbook or a CSV file.

The console's report screens and their exports are built from the same ``Table``, so a
figure exported is the figure shown. Money arrives as integer fen (or an exact
``Fraction`` of fen, such as 客单价) and leaves as yuan: a ``Decimal`` (fen / 100) in the
workbook with a ``#,##0.00`` format, never a float in our hands. Ratios are percent cells
(``0.0%``). An empty figure (a period with nothing to measure) is an empty cell.

CSV is UTF-8 with a byte order mark, which is what makes Excel on a Chinese Windows read
the headers as Chinese rather than mojibake; money is plain yuan (1234.50), ratios are
percentages (12.3%), as Excel reads them back.

Text that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@`` first) is
written with a leading apostrophe: a store or member group name must never become one.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

MONEY_UNITS = frozenset({"fen"})
RATIO_UNITS = frozenset({"ratio", "percent", "share"})
TEXT = "text"
CELL = "cell"  # a column whose cells each carry their own unit (``Cell``)
FORMULA_FIRST = ("=", "+", "-", "@", "\t", "\r")

XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MIME = "text/csv; charset=utf-8"


@dataclass(frozen=True)
class Column:
    key: str
    zh: str  # the header, in Chinese
    unit: str = TEXT  # fen | ratio | count | days | ... | text

    @property
    def header(self) -> str:
        if self.unit in MONEY_UNITS:
            return f"{self.zh} (元)"
        return self.zh


@dataclass(frozen=True)
class Cell:
    """A value with its own unit, in a column of unit ``CELL``: a summary's 本期 column
    holds money on one row, a count on the next, a ratio on the third."""

    value: Any
    unit: str


def _unpack(value: Any, unit: str) -> tuple[Any, str]:
    if isinstance(value, Cell):
        return value.value, value.unit
    return value, unit


@dataclass
class Table:
    """One report: a title, the columns, the rows (values in column order)."""

    title: str
    columns: list[Column]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (名称, 内容) for 说明


def _decimal(value: int | Fraction, places: int) -> Decimal:
    """An exact value as a Decimal rounded half up to ``places`` decimals."""
    value = Fraction(value)
    quantum = Decimal(1).scaleb(-places)
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(
        quantum, rounding=ROUND_HALF_UP
    )


def yuan_decimal(fen: int | Fraction) -> Decimal:
    """Fen as yuan to the fen: 123456 → Decimal('1234.56')."""
    return _decimal(Fraction(fen) / 100, 2)


def _safe_text(value: Any) -> str:
    text = str(value)
    return "'" + text if text.startswith(FORMULA_FIRST) else text


def cell_value(value: Any, unit: str) -> Any:
    """The value a workbook cell holds for ``value`` in ``unit``."""
    value, unit = _unpack(value, unit)
    if value is None:
        return None
    if unit == TEXT or isinstance(value, str):
        return _safe_text(value)
    if unit in MONEY_UNITS:
        return yuan_decimal(value)
    if unit in RATIO_UNITS:
        return _decimal(value, 6)
    if isinstance(value, Fraction):
        return value.numerator if value.denominator == 1 else _decimal(value, 2)
    return value


def number_format(unit: str, value: Any) -> str | None:
    if unit in MONEY_UNITS:
        return "#,##0.00"
    if unit in RATIO_UNITS:
        return "0.0%"
    if isinstance(value, Decimal):
        return "#,##0.00"
    if isinstance(value, int):
        return "#,##0"
    return None


def csv_text(value: Any, unit: str) -> str:
    """The CSV field for ``value``: yuan as 1234.50, ratios as 12.3%, empty for none."""
    value, unit = _unpack(value, unit)
    if value is None:
        return ""
    if unit == TEXT or isinstance(value, str):
        return _safe_text(value)
    if unit in MONEY_UNITS:
        return str(yuan_decimal(value))
    if unit in RATIO_UNITS:
        return f"{_decimal(Fraction(value) * 100, 1)}%"
    if isinstance(value, Fraction) and value.denominator != 1:
        return str(_decimal(value, 2))
    return str(int(value))


def to_csv(table: Table) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.header for c in table.columns])
    for row in table.rows:
        writer.writerow([csv_text(v, c.unit) for v, c in zip(row, table.columns, strict=True)])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def sheet_title(title: str) -> str:
    """Excel's sheet names: at most 31 characters, none of []:*?/\\."""
    cleaned = "".join("_" if ch in "[]:*?/\\" else ch for ch in title).strip("'") or "报表"
    return cleaned[:31]


def to_xlsx(table: Table, generated_at: dt.datetime | None = None) -> bytes:
    """The table as a workbook: the report on its first sheet (headers in row 1, frozen),
    and a 说明 sheet naming the report, its period and scope, and when it was made."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    book = Workbook()
    sheet = book.active
    sheet.title = sheet_title(table.title)
    header_font = Font(bold=True)
    header_fill = PatternFill("solid", fgColor="EEF2F7")
    for col, column in enumerate(table.columns, start=1):
        cell = sheet.cell(row=1, column=col, value=column.header)
        cell.font = header_font
        cell.fill = header_fill
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    for r, row in enumerate(table.rows, start=2):
        for col, (value, column) in enumerate(zip(row, table.columns, strict=True), start=1):
            held = cell_value(value, column.unit)
            cell = sheet.cell(row=r, column=col)
            cell.value = held
            if isinstance(held, str):
                cell.data_type = "s"  # never a formula, whatever the text
            fmt = number_format(_unpack(value, column.unit)[1], held)
            if fmt and held is not None:
                cell.number_format = fmt
    for col, column in enumerate(table.columns, start=1):
        widest = max(
            [_width(column.header)]
            + [_width(csv_text(row[col - 1], column.unit)) for row in table.rows[:500]]
        )
        sheet.column_dimensions[get_column_letter(col)].width = min(max(widest + 2, 8), 40)
    sheet.freeze_panes = "B2"
    notes = book.create_sheet("说明")
    facts = [("报表", table.title), *table.notes]
    if generated_at is not None:
        facts.append(("导出时间", generated_at.strftime("%Y-%m-%d %H:%M")))
    facts.append(("金额单位", "元"))
    for r, (name, text) in enumerate(facts, start=1):
        notes.cell(row=r, column=1, value=_safe_text(name)).font = header_font
        notes.cell(row=r, column=2, value=_safe_text(text)).data_type = "s"
    notes.column_dimensions["A"].width = 12
    notes.column_dimensions["B"].width = 60
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def encode(table: Table, fmt: str, generated_at: dt.datetime | None = None) -> tuple[bytes, str]:
    """The table as a download: (.xlsx or CSV bytes, its MIME type)."""
    if fmt == "xlsx":
        return to_xlsx(table, generated_at=generated_at), XLSX_MIME
    return to_csv(table), CSV_MIME


def content_disposition(filename: str) -> str:
    """The Content-Disposition of a download: HTTP headers are Latin-1, so an ASCII name
    for old clients and the real one (Chinese) in RFC 5987 form for every browser."""
    from urllib.parse import quote

    plain = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename)}"


def _width(text: str) -> int:
    """Columns wide enough for Chinese: a CJK character takes two."""
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)
