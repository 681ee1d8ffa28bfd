"""Server-rendered SVG charts: no JavaScript, no chart library, and no inline styles.

A strict Content-Security-Policy forbids ``style=`` attributes and ``<style>`` elements, so every element
carries a ``class`` (``chart-bar``, ``chart-line-0``, ``chart-tick``...) for the site's stylesheet and
SVG presentation attributes (``fill``, ``stroke``, ``font-size``) as defaults it may override. Each chart
is ``role="img"`` with an ``aria-label`` summary and a ``<title>``; all text is XML-escaped.

Points whose value is not a finite number are left out; a chart with no points left says "No data".
Times are labelled HH:MM in the time zone they carry.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from markupsafe import Markup, escape

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2")
AXIS, GRID, MUTED = "#9ca3af", "#e5e7eb", "#6b7280"
LEFT, RIGHT, TOP, BOTTOM = 46, 18, 22, 18  # margins around the plot area, in px
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

Series = list[tuple[datetime, float]]
Points = Sequence[tuple[datetime, float]]  # what a chart is given: (time, value), any order, maybe not finite


def _text(value: object) -> str:
    """Text for an element or attribute: characters XML cannot hold replaced, then escaped."""
    return str(escape(_NOT_XML.sub("\ufffd", str(value))))


def _n(x: float) -> str:
    """A coordinate, two decimals at most."""
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def fmt(value: float, unit: str = "") -> str:
    """A value for a label: 3 significant digits, k / M for thousands / millions, then the unit."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            text = f"{value / scale:.3g}{suffix}"
            break
    else:
        text = str(int(value)) if value == int(value) else f"{value:.3g}"
    return f"{text} {unit}" if unit else text


def _hhmm(moment: datetime) -> str:
    return moment.strftime("%H:%M")


def _finite(points: Iterable[tuple[datetime, float]]) -> Series:
    return sorted((t, float(v)) for t, v in points if isinstance(v, int | float) and math.isfinite(v))


def _nice(value: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten that is at least ``value`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value * (1 - 1e-12))


class _Frame:
    """The chart's box: a value range mapped onto the plot area, with the y axis drawn."""

    def __init__(self, values: Sequence[float], width: int, height: int) -> None:
        low, high = min(0.0, *values), max(0.0, *values)
        self.high = _nice(high) if high > 0 else 0.0
        self.low = -_nice(-low) if low < 0 else 0.0
        if self.high == self.low:
            self.high = 1.0
        self.width, self.height = width, height
        self.plot_w, self.plot_h = max(1, width - LEFT - RIGHT), max(1, height - TOP - BOTTOM)

    def y(self, value: float) -> float:
        return TOP + (self.high - value) / (self.high - self.low) * self.plot_h

    def y_axis(self, unit: str) -> list[str]:
        out = []
        for tick in (self.low, (self.low + self.high) / 2, self.high):
            y = _n(self.y(tick))
            out.append(
                f'<line class="chart-grid" x1="{LEFT}" y1="{y}" x2="{LEFT + self.plot_w}" y2="{y}" stroke="{GRID}"/>'
            )
            out.append(
                f'<text class="chart-tick chart-tick-y" x="{LEFT - 4}" y="{y}" text-anchor="end" '
                f'dominant-baseline="middle" font-size="10" fill="{MUTED}">{_text(fmt(tick, unit))}</text>'
            )
        y0, bottom = _n(self.y(0)), _n(TOP + self.plot_h)
        out.append(f'<line class="chart-axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="{AXIS}"/>')
        out.append(
            f'<line class="chart-axis" x1="{LEFT}" y1="{y0}" x2="{LEFT + self.plot_w}" y2="{y0}" stroke="{AXIS}"/>'
        )
        return out


def _x_tick(x: float, moment: datetime, height: int) -> str:
    return (
        f'<text class="chart-tick chart-tick-x" x="{_n(x)}" y="{height - 5}" text-anchor="middle" '
        f'font-size="10" fill="{MUTED}">{_hhmm(moment)}</text>'
    )


def _svg(kind: str, title: str, summary: str, width: int, height: int, body: list[str]) -> Markup:
    label = f"{title}: {summary}" if title else summary
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {kind}-chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_text(label)}">'
        f"<title>{_text(title)}</title>"
        f'<text class="chart-title" x="{LEFT}" y="14" font-size="11" font-weight="bold">{_text(title)}</text>'
    )
    return Markup(head + "".join(body) + "</svg>")  # every piece of text above is escaped


def _empty(kind: str, title: str, width: int, height: int) -> Markup:
    text = (
        f'<text class="chart-empty" x="{_n(width / 2)}" y="{_n(height / 2)}" text-anchor="middle" '
        f'font-size="11" fill="{MUTED}">No data</text>'
    )
    return _svg(kind, title, "no data", width, height, [text])


def _span(points: Series, unit: str) -> str:
    top = max(points, key=lambda p: p[1])
    return f"{len(points)} points from {_hhmm(points[0][0])} to {_hhmm(points[-1][0])}, highest {fmt(top[1], unit)}"


def _legend(names: Iterable[str], width: int) -> list[str]:
    """Each series' name in its colour (``chart-legend-0``...), in a row that ends at the plot's right edge."""
    names = list(names)
    x = float(width - RIGHT - sum(6 * len(name) + 12 for name in names) + 12)
    out = []
    for k, name in enumerate(names):
        out.append(
            f'<text class="chart-legend chart-legend-{k}" x="{_n(x)}" y="14" '
            f'font-size="10" fill="{PALETTE[k % len(PALETTE)]}">{_text(name)}</text>'
        )
        x += 6 * len(name) + 12
    return out


def bar_chart(series: Points, *, title: str, width: int = 600, height: int = 160, unit: str = "") -> Markup:
    """One bar per point, in time order (points are taken as evenly spaced, e.g. ``bucket_counts``)."""
    points = _finite(series)
    if not points:
        return _empty("bar", title, width, height)
    frame = _Frame([v for _, v in points], width, height)
    slot = frame.plot_w / len(points)
    bar_w, y0 = min(48.0, max(1.0, slot * 0.8)), frame.y(0)
    body = frame.y_axis(unit)
    body.append('<g class="chart-bars">')
    for i, (moment, value) in enumerate(points):
        x, y = LEFT + i * slot + (slot - bar_w) / 2, frame.y(value)
        body.append(
            f'<rect class="chart-bar" x="{_n(x)}" y="{_n(min(y, y0))}" width="{_n(bar_w)}" '
            f'height="{_n(abs(y0 - y))}" fill="{PALETTE[0]}" data-value="{_text(fmt(value))}">'
            f"<title>{_hhmm(moment)}: {_text(fmt(value, unit))}</title></rect>"
        )
    body.append("</g>")
    step = math.ceil(len(points) / 6)
    body += [_x_tick(LEFT + (i + 0.5) * slot, points[i][0], height) for i in range(0, len(points), step)]
    return _svg("bar", title, _span(points, unit), width, height, body)


def stacked_bar_chart(
    series: Mapping[str, Points], *, title: str, width: int = 600, height: int = 160, unit: str = ""
) -> Markup:
    """Counts per bucket, one bar per time with a segment per named series (``chart-bar-0``, ``chart-bar-1``…),
    stacked in the order given, with a legend: counts drawn as bars like the other count charts."""
    named = {name: dict(_finite(points)) for name, points in series.items()}
    times = sorted({t for points in named.values() for t in points})
    if not times:
        return _empty("stacked", title, width, height)
    totals = [sum(points.get(t, 0.0) for points in named.values()) for t in times]
    frame = _Frame(totals, width, height)
    slot = frame.plot_w / len(times)
    bar_w = min(48.0, max(1.0, slot * 0.8))
    body = frame.y_axis(unit)
    body.append('<g class="chart-bars">')
    for i, moment in enumerate(times):
        x, below = LEFT + i * slot + (slot - bar_w) / 2, 0.0
        for k, (name, points) in enumerate(named.items()):
            value = points.get(moment, 0.0)
            if value <= 0:
                continue
            top, bottom = frame.y(below + value), frame.y(below)
            body.append(
                f'<rect class="chart-bar chart-bar-{k}" x="{_n(x)}" y="{_n(top)}" width="{_n(bar_w)}" '
                f'height="{_n(bottom - top)}" fill="{PALETTE[k % len(PALETTE)]}" data-value="{_text(fmt(value))}">'
                f"<title>{_hhmm(moment)}: {_text(name)} {_text(fmt(value, unit))}</title></rect>"
            )
            below += value
    body.append("</g>")
    body += _legend(named, width)
    step = math.ceil(len(times) / 6)
    body += [_x_tick(LEFT + (i + 0.5) * slot, times[i], height) for i in range(0, len(times), step)]
    summary = "; ".join(f"{name}: {fmt(sum(points.values()), unit)} in all" for name, points in named.items())
    return _svg("stacked", title, summary, width, height, body)


def line_chart(
    series: Mapping[str, Points], *, title: str, width: int = 600, height: int = 160, unit: str = ""
) -> Markup:
    """One line per named series (``chart-line-0``, ``chart-line-1``...), placed by time, with a legend."""
    lines = {name: _finite(points) for name, points in series.items()}
    every = [p for points in lines.values() for p in points]
    if not every:
        return _empty("line", title, width, height)
    frame = _Frame([v for _, v in every], width, height)
    start, end = min(t for t, _ in every), max(t for t, _ in every)
    seconds = (end - start).total_seconds()

    def x(moment: datetime) -> float:
        share = (moment - start).total_seconds() / seconds if seconds else 0.5
        return LEFT + share * frame.plot_w

    body = frame.y_axis(unit)
    for i, ((name, points), legend) in enumerate(zip(lines.items(), _legend(lines, width), strict=True)):
        colour, cls = PALETTE[i % len(PALETTE)], f"chart-line-{i}"
        coords = " ".join(f"{_n(x(t))},{_n(frame.y(v))}" for t, v in points)
        if len(points) > 1:
            body.append(
                f'<polyline class="chart-line {cls}" points="{coords}" fill="none" stroke="{colour}" '
                f'stroke-width="1.5"><title>{_text(name)}</title></polyline>'
            )
        elif points:
            cx, cy = coords.split(",")
            body.append(
                f'<circle class="chart-point {cls}" cx="{cx}" cy="{cy}" r="2.5" fill="{colour}">'
                f"<title>{_text(name)}</title></circle>"
            )
        body.append(legend)
    times = sorted({t for t, _ in every})  # ticks at data times: bucket starts are round
    ticks = [times[round(k * (len(times) - 1) / 4)] for k in range(5)] if len(times) > 4 else times
    body += [_x_tick(x(moment), moment, height) for moment in ticks]
    summary = "; ".join(
        f"{name}: {_span(points, unit)}" if points else f"{name}: no data" for name, points in lines.items()
    )
    return _svg("line", title, summary, width, height, body)
