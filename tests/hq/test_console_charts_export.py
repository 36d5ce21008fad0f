"""The console's SVG charts (hq/console/charts.py) and the report writers
(hq/reports/export.py): pure code, tested from tables."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from decimal import Decimal
from fractions import Fraction as F

import pytest
from openpyxl import load_workbook

from hq.console import charts
from hq.reports.export import CELL, TEXT, Cell, Column, Table, to_csv, to_xlsx, yuan_decimal


@pytest.mark.parametrize(
    ("value", "unit", "label"),
    [
        (0, "fen", "¥0"),
        (99, "fen", "¥0.99"),
        (123456, "fen", "¥1,235"),
        (12345678, "fen", "¥12.3万"),
        (1500000, "fen", "¥1.5万"),
        (-250000, "fen", "-¥2,500"),
        (30_000_000_000, "fen", "¥3亿"),
        (F(1, 3), "ratio", "33.3%"),
        (F(1, 2000), "ratio", "0.1%"),
        (F(-1, 8), "ratio", "-12.5%"),
        (1234, "count", "1,234"),
        (F(7, 4), "count", "1.75"),
    ],
)
def test_axis_labels(value, unit, label):
    assert charts.axis_label(value, unit) == label


@pytest.mark.parametrize(
    ("values", "unit", "low", "high", "step"),
    [
        ([F(31, 100), F(42, 100)], "ratio", 0, F(1, 2), F(1, 10)),
        ([1234567], "fen", 0, 1500000, 500000),
        ([], "fen", 0, 100, 20),
        ([], "ratio", 0, F(1, 10), F(1, 50)),
        ([-300, 700], "fen", -400, 800, 200),
    ],
)
def test_the_value_axis_is_round_and_covers_every_value(values, unit, low, high, step):
    scale = charts.Scale.over(values, unit)
    assert (scale.low, scale.high, scale.step) == (low, high, step)
    assert all(scale.low <= v <= scale.high for v in values)


def test_a_line_chart_breaks_where_there_is_nothing_to_measure():
    points = [("1月", F(1, 4)), ("2月", F(1, 2)), ("3月", None), ("4月", F(3, 10))]
    svg = str(charts.line_chart(points, "ratio", "会员交易额占有率"))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<polyline") == 2  # 1-2月, then 4月 alone
    assert svg.count("<circle") == 3
    assert "<title>会员交易额占有率</title>" in svg
    assert "3月: —" in svg  # the description a screen reader reads
    assert "50.0%" in svg and "style=" not in svg


def test_a_chart_with_no_data_says_so_and_escapes_labels():
    svg = str(charts.line_chart([("<b>", None)], "fen", "销售额 & 客单价"))
    assert "暂无数据" in svg and "<b>" not in svg and "&amp;" in svg
    bars = str(charts.bar_chart([], "fen", "各门店"))
    assert "暂无数据" in bars


def test_bars_are_as_long_as_their_values_and_show_them():
    rows = [("S001 南京西路店", 200000), ("S002", 100000), ("S003", None)]
    svg = str(charts.bar_chart(rows, "fen", "各门店销售额"))
    widths = [float(w) for w in re.findall(r'<rect class="bar" [^>]*width="([0-9.]+)"', svg)]
    assert len(widths) == 2 and widths[0] == pytest.approx(2 * widths[1], rel=0.01)
    assert "¥2,000" in svg and "¥1,000" in svg and ">—<" in svg


def test_long_names_are_clipped_by_display_width():
    assert charts._clip("S001 南京西路店") == "S001 南京西路店"
    clipped = charts._clip("上海市黄浦区南京东路步行街旗舰店")
    assert clipped.endswith("…") and len(clipped) < 14


def _table() -> Table:
    return Table(
        "月报 2026年11月 按门店",
        [
            Column("label", "门店"),
            Column("sales", "销售额", "fen"),
            Column("share", "会员交易额占有率", "ratio"),
            Column("tickets", "客单数", "count"),
            Column("avg", "客单价", "fen"),
            Column("items", "客单件", "count"),
        ],
        [
            ["S001 南京西路店", 12345678, F(2, 3), 120, F(12345678, 120), F(7, 4)],
            ['=HYPERLINK("x")', 0, None, 0, None, None],
        ],
        [("期间", "2026年11月")],
    )


def test_xlsx_has_chinese_headers_yuan_and_percent_cells():
    book = load_workbook(io.BytesIO(to_xlsx(_table(), dt.datetime(2026, 12, 5, 9, 30))))
    sheet = book.worksheets[0]
    assert sheet.title == "月报 2026年11月 按门店"
    headers = [c.value for c in sheet[1]]
    assert headers == ["门店", "销售额 (元)", "会员交易额占有率", "客单数", "客单价 (元)", "客单件"]
    row = [c for c in sheet[2]]
    assert row[0].value == "S001 南京西路店"
    assert Decimal(str(row[1].value)) == Decimal("123456.78")
    assert row[1].number_format == "#,##0.00"
    assert row[2].value == pytest.approx(0.666667) and row[2].number_format == "0.0%"
    assert row[3].value == 120 and row[3].number_format == "#,##0"
    assert Decimal(str(row[4].value)) == Decimal("1028.81")  # 102880.65 fen, half up
    assert Decimal(str(row[5].value)) == Decimal("1.75")
    second = [c.value for c in sheet[3]]
    assert second[0] == '\'=HYPERLINK("x")'  # text, never a formula
    assert sheet[3][0].data_type == "s"
    assert second[2] is None  # nothing to measure: an empty cell
    notes = {r[0].value: r[1].value for r in book["说明"].iter_rows()}
    assert notes["期间"] == "2026年11月" and notes["导出时间"] == "2026-12-05 09:30"


def test_csv_is_utf8_with_a_bom_and_plain_yuan():
    body = to_csv(_table())
    assert body.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0][:2] == ["门店", "销售额 (元)"]
    assert rows[1] == ["S001 南京西路店", "123456.78", "66.7%", "120", "1028.81", "1.75"]
    assert rows[2][0].startswith("'=") and rows[2][2] == ""


def test_a_column_of_cells_writes_each_with_its_own_unit():
    table = Table(
        "月报",
        [Column("kpi", "指标"), Column("current", "本期", CELL), Column("d", "环比", TEXT)],
        [["销售额", Cell(150, "fen"), "▲ 5.0%"], ["占有率", Cell(F(1, 4), "ratio"), "—"]],
    )
    sheet = load_workbook(io.BytesIO(to_xlsx(table))).worksheets[0]
    assert (
        Decimal(str(sheet["B2"].value)) == Decimal("1.50")
        and sheet["B2"].number_format == "#,##0.00"
    )
    assert sheet["B3"].value == 0.25 and sheet["B3"].number_format == "0.0%"
    rows = list(csv.reader(io.StringIO(to_csv(table).decode("utf-8-sig"))))
    assert rows[1] == ["销售额", "1.50", "▲ 5.0%"] and rows[2][1] == "25.0%"


def test_yuan_is_exact():
    assert yuan_decimal(1) == Decimal("0.01")
    assert yuan_decimal(-105) == Decimal("-1.05")
    assert yuan_decimal(F(1, 2)) == Decimal("0.01")  # half a fen rounds up


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (None, "fen", "—"),
        (123456, "fen", "¥1,234.56"),
        (F(1001, 2), "fen", "¥5.01"),  # half a fen rounds up
        (-5, "fen", "-¥0.05"),
        (F(2, 3), "ratio", "66.7%"),
        (0, "ratio", "0.0%"),
        (12345, "count", "12,345"),
        (F(7, 4), "qty", "1.75"),
        (F(61, 2), "days", "30.50 天"),
        (F(77, 2), "years", "38.50 岁"),
        (F(5, 2), "per_member", "2.50 次"),
    ],
)
def test_figures_on_screen(value, unit, text):
    from hq.console.reports_pages import show

    assert show(value, unit) == text


@pytest.mark.parametrize(
    ("now", "before", "unit", "better", "text", "css"),
    [
        (110, 100, "fen", 1, "▲ 10.0%", "up tone-good"),
        (90, 100, "fen", 1, "▼ 10.0%", "down tone-bad"),
        (100, 100, "fen", 1, "持平", "flat tone-flat"),
        (5, 0, "count", 1, "▲ 新增", "up tone-good"),
        (None, 100, "fen", 1, "—", "flat tone-flat"),
        (F(1, 2), F(2, 5), "ratio", 1, "▲ 10.0 个百分点", "up tone-good"),
        (F(3, 10), F(1, 5), "ratio", -1, "▲ 10.0 个百分点", "up tone-bad"),  # churn rose
        (F(1, 10), F(1, 5), "ratio", -1, "▼ 10.0 个百分点", "down tone-good"),
        (40, 30, "years", 0, "▲ 33.3%", "up tone-flat"),  # neither good nor bad
    ],
)
def test_changes_are_coloured_by_which_way_is_better(now, before, unit, better, text, css):
    from hq.console.reports_pages import change

    moved = change(now, before, unit, better)
    assert (moved.text, moved.css) == (text, css)
