"""Charts for the console, drawn on the server as inline SVG (no script, no chart library,
nothing fetched from the internet): a line chart for a figure over time and a bar chart
for a figure across stores, areas, staff or member groups.

Values come in as the KPI engine gives them (``int`` fen, counts, ``Fraction`` ratios, or
``None`` for a period with nothing to measure); they stay exact until they become pixel
coordinates. Axis labels are Chinese-friendly short forms (¥1.2万, 35.0%). Colours and
fonts are CSS classes (hq/console/static/reports.css): the console's CSP allows no
inline style.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from markupsafe import Markup, escape

Number = int | Fraction

MONEY_UNITS = frozenset({"fen"})
RATIO_UNITS = frozenset({"ratio", "percent", "share"})


def _round_half_up(value: Fraction) -> int:
    """The nearest integer, halves away from zero (money and percentages on screen)."""
    sign = -1 if value < 0 else 1
    return sign * int(abs(value) + Fraction(1, 2))


def axis_label(value: Number, unit: str) -> str:
    """A short label for an axis tick or a bar's end: ¥1.2万, ¥850, 35.0%, 1,234."""
    value = Fraction(value)
    if unit in RATIO_UNITS:
        tenths = _round_half_up(value * 1000)
        sign = "-" if tenths < 0 else ""
        return f"{sign}{abs(tenths) // 10}.{abs(tenths) % 10}%"
    if unit in MONEY_UNITS:
        yuan = value / 100
        sign = "-" if yuan < 0 else ""
        yuan = abs(yuan)
        if yuan >= 100_000_000:
            return f"{sign}¥{_short(yuan / 100_000_000)}亿"
        if yuan >= 10_000:
            return f"{sign}¥{_short(yuan / 10_000)}万"
        if yuan.denominator == 1 or yuan >= 100:
            return f"{sign}¥{_round_half_up(yuan):,}"
        cents = _round_half_up(yuan * 100)
        return f"{sign}¥{cents // 100}.{cents % 100:02d}"
    if value.denominator == 1:
        return f"{int(value):,}"
    hundredths = _round_half_up(value * 100)
    sign = "-" if hundredths < 0 else ""
    hundredths = abs(hundredths)
    return f"{sign}{hundredths // 100:,}.{hundredths % 100:02d}"


def _short(value: Fraction) -> str:
    """One decimal, dropped when it is zero (1.2, 15)."""
    tenths = _round_half_up(value * 10)
    return f"{tenths // 10:,}" if tenths % 10 == 0 else f"{tenths // 10:,}.{tenths % 10}"


def nice_step(span: Fraction, ticks: int = 5) -> Fraction:
    """The tick step 1, 2 or 5 times a power of ten that covers ``span`` in about
    ``ticks`` steps."""
    if span <= 0:
        return Fraction(1)
    raw = span / ticks
    power = Fraction(1)
    for _ in range(40):  # bounded: 10**±40 covers any figure a chain has
        if power * 10 <= raw:
            power *= 10
        elif power > raw:
            power /= 10
        else:
            break
    for mult in (1, 2, 5, 10):
        if power * mult >= raw:
            return power * mult
    return power * 10


@dataclass(frozen=True)
class Scale:
    """The value axis: from ``low`` to ``high`` in ``step`` ticks."""

    low: Fraction
    high: Fraction
    step: Fraction

    @classmethod
    def over(cls, values: Sequence[Number], unit: str) -> Scale:
        known = [Fraction(v) for v in values]
        top = max([Fraction(0), *known])
        bottom = min([Fraction(0), *known])
        if top == bottom:
            top = bottom + (Fraction(1, 10) if unit in RATIO_UNITS else Fraction(100))
        step = nice_step(top - bottom)
        low = _floor_to(bottom, step)
        high = _ceil_to(top, step)
        return cls(low, high, step)

    def ticks(self) -> list[Fraction]:
        count = int((self.high - self.low) / self.step)
        return [self.low + self.step * i for i in range(count + 1)]

    def at(self, value: Number, start: float, length: float) -> float:
        """Where ``value`` falls on an axis ``length`` pixels long from ``start``."""
        share = (Fraction(value) - self.low) / (self.high - self.low)
        return round(start + float(share) * length, 1)


def _floor_to(value: Fraction, step: Fraction) -> Fraction:
    return (value // step) * step


def _ceil_to(value: Fraction, step: Fraction) -> Fraction:
    return -((-value) // step) * step


def _svg_open(width: int, height: int, title: str, desc: str, css: str) -> str:
    return (
        f'<svg class="chart {escape(css)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>"
    )


def line_chart(
    points: Sequence[tuple[str, Number | None]],
    unit: str,
    title: str,
    *,
    width: int = 640,
    height: int = 240,
    css: str = "line",
) -> Markup:
    """A figure over time: ``points`` are (label, value) oldest first; a ``None`` value
    (nothing to measure then) breaks the line rather than drawing a zero."""
    left, right, top, bottom = 64, 28, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    known = [v for _, v in points if v is not None]
    scale = Scale.over(known, unit)
    parts = [_svg_open(width, height, title, _describe(points, unit), css)]
    parts.extend(_value_axis(scale, unit, left, top, plot_w, plot_h))
    n = len(points)
    gap = plot_w / max(n - 1, 1)
    every = max(1, -(-n // 12))  # at most about 12 labels under the axis
    xs = [round(left + gap * i, 1) if n > 1 else left + plot_w / 2 for i in range(n)]
    for i, (label, _) in enumerate(points):
        if i % every == 0 or i == n - 1:
            parts.append(
                f'<text class="x-label" x="{xs[i]}" y="{height - bottom + 18}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    segment: list[str] = []
    segments: list[list[str]] = []
    for i, (_, value) in enumerate(points):
        if value is None:
            if segment:
                segments.append(segment)
            segment = []
            continue
        y = scale.at(value, top + plot_h, -plot_h)
        segment.append(f"{xs[i]},{y}")
    if segment:
        segments.append(segment)
    for seg in segments:
        parts.append(f'<polyline class="series" points="{" ".join(seg)}" fill="none"/>')
    for i, (label, value) in enumerate(points):
        if value is None:
            continue
        y = scale.at(value, top + plot_h, -plot_h)
        parts.append(
            f'<circle class="dot" cx="{xs[i]}" cy="{y}" r="3">'
            f"<title>{escape(label)}: {escape(axis_label(value, unit))}</title></circle>"
        )
    if not known:
        parts.append(
            f'<text class="empty" x="{left + plot_w / 2}" y="{top + plot_h / 2}" '
            f'text-anchor="middle">暂无数据</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every label and title above is escaped


def bar_chart(
    rows: Sequence[tuple[str, Number | None]],
    unit: str,
    title: str,
    *,
    width: int = 640,
    bar: int = 22,
    css: str = "bars",
) -> Markup:
    """A figure across stores, areas, staff or groups: one horizontal bar per row (long
    Chinese names read better beside a bar than under it), its value at its end."""
    left, right, top, bottom = 168, 72, 8, 28
    rows = list(rows)
    height = top + bottom + bar * max(len(rows), 1) + 4
    plot_w = width - left - right
    known = [v for _, v in rows if v is not None]
    scale = Scale.over(known, unit)
    parts = [_svg_open(width, height, title, _describe(rows, unit), css)]
    zero = scale.at(0, left, plot_w)
    for tick in scale.ticks():
        x = scale.at(tick, left, plot_w)
        parts.append(
            f'<line class="grid" x1="{x}" y1="{top}" x2="{x}" y2="{height - bottom}"/>'
            f'<text class="y-label" x="{x}" y="{height - bottom + 16}" '
            f'text-anchor="middle">{escape(axis_label(tick, unit))}</text>'
        )
    for i, (label, value) in enumerate(rows):
        y = top + bar * i
        mid = y + bar / 2 + 4
        parts.append(
            f'<text class="bar-label" x="{left - 6}" y="{mid}" text-anchor="end">'
            f"{escape(_clip(label))}<title>{escape(label)}</title></text>"
        )
        if value is None:
            parts.append(f'<text class="bar-value" x="{zero + 4}" y="{mid}">—</text>')
            continue
        x = scale.at(value, left, plot_w)
        x0, x1 = min(zero, x), max(zero, x)
        neg = " negative" if value < 0 else ""
        parts.append(
            f'<rect class="bar{neg}" x="{x0}" y="{y + 3}" width="{round(x1 - x0, 1)}" '
            f'height="{bar - 6}"><title>{escape(label)}: {escape(axis_label(value, unit))}'
            f"</title></rect>"
            f'<text class="bar-value" x="{x1 + 4}" y="{mid}">{escape(axis_label(value, unit))}'
            "</text>"
        )
    if not rows:
        parts.append(
            f'<text class="empty" x="{left + plot_w / 2}" y="{top + bar / 2 + 4}" '
            f'text-anchor="middle">暂无数据</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every label and title above is escaped


def _value_axis(
    scale: Scale, unit: str, left: int, top: int, plot_w: int, plot_h: int
) -> list[str]:
    parts = []
    for tick in scale.ticks():
        y = scale.at(tick, top + plot_h, -plot_h)
        parts.append(
            f'<line class="grid" x1="{left}" y1="{y}" x2="{left + plot_w}" y2="{y}"/>'
            f'<text class="y-label" x="{left - 6}" y="{round(y + 4, 1)}" '
            f'text-anchor="end">{escape(axis_label(tick, unit))}</text>'
        )
    return parts


def _clip(label: str, most: int = 24) -> str:
    """At most ``most`` half-width places (a Chinese character takes two)."""
    used = 0
    for i, ch in enumerate(label):
        used += 2 if ord(ch) > 0x2E80 else 1
        if used > most:
            return label[: max(i - 1, 1)] + "…"
    return label


def _describe(points: Sequence[tuple[str, Number | None]], unit: str) -> str:
    """The chart's data in words, for a screen reader."""
    return "; ".join(
        f"{label}: {'—' if value is None else axis_label(value, unit)}" for label, value in points
    )
