"""SVG charts: well-formed XML, bars and lines that match the data, escaping, no inline styles, buckets."""

from __future__ import annotations

import itertools
import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
from markupsafe import Markup

from router.records.buckets import bucket_counts, bucket_percentiles, percentile
from router.ui.charts import bar_chart, fmt, line_chart

NS = "{http://www.w3.org/2000/svg}"
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
HOSTILE = "</title><script>alert(1)</script> & \"quoted\" 'single' \x00\x1b end"


def parse(svg: Markup) -> ET.Element:
    assert isinstance(svg, Markup)
    root = ET.fromstring(str(svg))
    assert root.tag == f"{NS}svg"
    assert (root.get("class") or "").split()[0] == "chart"
    assert root.get("role") == "img"
    assert root.get("aria-label")
    assert root.find(f"{NS}title") is not None
    for element in root.iter():
        assert "style" not in element.attrib, element.tag  # a strict CSP forbids inline styles
        assert element.tag not in (f"{NS}style", f"{NS}script", f"{NS}foreignObject")
        assert not any(name.startswith("on") for name in element.attrib)
    return root


def by_class(root: ET.Element, cls: str) -> list[ET.Element]:
    return [e for e in root.iter() if cls in (e.get("class") or "").split()]


def series(values: list[float], minutes: int = 5) -> list[tuple[datetime, float]]:
    return [(T0 + timedelta(minutes=minutes * i), v) for i, v in enumerate(values)]


def test_bar_chart_has_one_bar_per_point_with_heights_in_proportion() -> None:
    values = [3.0, 0.0, 7.0, 12.0, 1.5]
    root = parse(bar_chart(series(values), title="Events", unit="ev"))
    bars = by_class(root, "chart-bar")
    assert len(bars) == len(values)
    heights = [float(bar.get("height", "nan")) for bar in bars]
    assert heights[1] == 0
    scale = heights[3] / 12
    assert scale > 0
    for value, height in zip(values, heights, strict=True):
        assert math.isclose(height, value * scale, abs_tol=0.02)
    bottoms = {round(float(bar.get("y", "nan")) + h, 1) for bar, h in zip(bars, heights, strict=True)}
    assert len(bottoms) == 1  # every bar stands on the same baseline
    xs = [float(bar.get("x", "nan")) for bar in bars]
    assert xs == sorted(xs)
    assert [bar.findtext(f"{NS}title") for bar in bars][3] == "10:15: 12 ev"
    assert root.findtext(f"{NS}title") == "Events"
    assert root.get("aria-label") == "Events: 5 points from 10:00 to 10:20, highest 12 ev"


def test_bar_chart_sorts_by_time_and_drops_values_that_are_not_numbers() -> None:
    points = [(T0 + timedelta(minutes=10), 2.0), (T0, 1.0), (T0 + timedelta(minutes=5), math.nan)]
    points.append((T0 + timedelta(minutes=15), math.inf))
    root = parse(bar_chart(points, title="t"))
    bars = by_class(root, "chart-bar")
    assert [bar.get("data-value") for bar in bars] == ["1", "2"]


def test_bar_chart_negative_values_hang_below_the_axis() -> None:
    root = parse(bar_chart(series([4.0, -2.0]), title="t"))
    up, down = by_class(root, "chart-bar")
    assert math.isclose(float(up.get("height", "nan")), 2 * float(down.get("height", "nan")), abs_tol=0.02)
    assert float(down.get("y", "nan")) == pytest.approx(float(up.get("y", "nan")) + float(up.get("height", "nan")))


def test_axes_have_hhmm_time_labels_and_value_ticks() -> None:
    root = parse(bar_chart(series([1.0] * 24), title="t", unit="ms"))
    labels = [e.text or "" for e in by_class(root, "chart-tick-x")]
    assert labels[0] == "10:00"
    assert 2 <= len(labels) <= 6
    assert all(re.fullmatch(r"\d\d:\d\d", label) for label in labels)
    assert [e.text for e in by_class(root, "chart-tick-y")] == ["0 ms", "0.5 ms", "1 ms"]
    assert by_class(root, "chart-axis")


def test_hostile_title_and_names_are_escaped() -> None:
    for svg in (
        bar_chart(series([1.0, 2.0]), title=HOSTILE, unit=HOSTILE),
        line_chart({HOSTILE: series([1.0, 2.0])}, title=HOSTILE, unit="<b>"),
        line_chart({}, title=HOSTILE),
    ):
        assert "<script" not in str(svg)
        root = parse(svg)
        expected = HOSTILE.replace("\x00", "\ufffd").replace("\x1b", "\ufffd")
        assert root.findtext(f"{NS}title") == expected
        assert (root.get("aria-label") or "").startswith(expected + ": ")
        assert by_class(root, "chart-title")[0].text == expected
    legend = by_class(parse(line_chart({"<p50>": series([1.0, 2.0])}, title="t")), "chart-legend")
    assert [e.text for e in legend] == ["<p50>"]


@pytest.mark.parametrize(
    "svg",
    [
        bar_chart([], title="Nothing"),
        bar_chart([(T0, math.nan)], title="Nothing"),
        line_chart({}, title="Nothing"),
        line_chart({"p50": [], "p95": []}, title="Nothing"),
    ],
    ids=["bar", "bar-nan", "line", "line-empty-series"],
)
def test_empty_series_render_a_no_data_chart(svg: Markup) -> None:
    root = parse(svg)
    assert [e.text for e in by_class(root, "chart-empty")] == ["No data"]
    assert not by_class(root, "chart-bar")
    assert not by_class(root, "chart-line")
    assert root.get("aria-label") == "Nothing: no data"
    assert root.findtext(f"{NS}title") == "Nothing"


def test_line_chart_draws_each_series_with_its_own_class() -> None:
    p50 = series([10.0, 20.0, 15.0, 30.0])
    p95 = series([40.0, 80.0, 60.0, 100.0])
    root = parse(line_chart({"p50": p50, "p95": p95}, title="Latency", unit="ms"))
    lines = by_class(root, "chart-line")
    assert [line.get("class") for line in lines] == ["chart-line chart-line-0", "chart-line chart-line-1"]
    assert [line.findtext(f"{NS}title") for line in lines] == ["p50", "p95"]
    assert [e.text for e in by_class(root, "chart-legend")] == ["p50", "p95"]
    coords = [[tuple(map(float, p.split(","))) for p in (line.get("points") or "").split()] for line in lines]
    assert [len(c) for c in coords] == [4, 4]
    assert [x for x, _ in coords[0]] == [x for x, _ in coords[1]]  # same times, same x
    xs = [x for x, _ in coords[0]]
    assert xs == sorted(xs)
    assert len(set(xs)) == 4
    baseline = float(by_class(root, "chart-axis")[1].get("y1", "nan"))
    heights = [baseline - y for _, y in coords[0] + coords[1]]
    scale = heights[-1] / 100  # p95's 100 ms is the highest point
    for value, height in zip([10, 20, 15, 30, 40, 80, 60, 100], heights, strict=True):
        assert math.isclose(height, value * scale, abs_tol=0.02)
    labels = [e.text or "" for e in by_class(root, "chart-tick-x")]
    assert labels[0] == "10:00"
    assert labels[-1] == "10:15"
    assert "p50: 4 points from 10:00 to 10:15, highest 30 ms" in (root.get("aria-label") or "")


def test_line_chart_single_point_and_missing_series() -> None:
    root = parse(line_chart({"p50": [(T0, 5.0)], "p95": []}, title="t"))
    assert len(by_class(root, "chart-point")) == 1
    assert not by_class(root, "chart-line")
    assert "p95: no data" in (root.get("aria-label") or "")


def test_fmt() -> None:
    assert [fmt(v) for v in (0, 5, 2.5, 0.125, 1500, 2_000_000, -3)] == ["0", "5", "2.5", "0.125", "1.5k", "2M", "-3"]
    assert fmt(12, "ms") == "12 ms"


def test_bucket_counts() -> None:
    end = datetime(2024, 5, 1, 10, 7, 30, tzinfo=UTC)
    times = [
        datetime(2024, 5, 1, 9, 5, tzinfo=UTC),  # before the first bucket (09:10)
        datetime(2024, 5, 1, 9, 10, tzinfo=UTC),
        datetime(2024, 5, 1, 9, 14, 59, tzinfo=UTC),
        datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
        datetime(2024, 5, 1, 10, 7, 29, tzinfo=UTC),
        datetime(2024, 5, 1, 10, 7, 31, tzinfo=UTC),  # after end
    ]
    counts = bucket_counts(times, end=end, minutes=60, bucket_minutes=5)
    assert len(counts) == 12
    assert counts[0] == (datetime(2024, 5, 1, 9, 10, tzinfo=UTC), 2)
    assert counts[-1] == (datetime(2024, 5, 1, 10, 5, tzinfo=UTC), 1)
    assert counts[-2] == (datetime(2024, 5, 1, 10, 0, tzinfo=UTC), 1)
    assert sum(n for _, n in counts) == 4
    starts = [t for t, _ in counts]
    assert all(b - a == timedelta(minutes=5) for a, b in itertools.pairwise(starts))
    assert bucket_counts([], end=end, minutes=7, bucket_minutes=5)[0][0] == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="positive"):
        bucket_counts([], end=end, minutes=60, bucket_minutes=0)
    naive = bucket_counts([datetime(2024, 1, 1, 0, 1)], end=datetime(2024, 1, 1, 0, 2), minutes=1, bucket_minutes=1)
    assert naive == [(datetime(2024, 1, 1, 0, 2), 0)]
    assert bar_chart(counts, title="Events")  # the output feeds a chart


def test_percentile() -> None:
    assert percentile([1.0], 95) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([float(i) for i in range(101)], 95) == 95.0
    assert percentile([0.0, 10.0], 95) == pytest.approx(9.5)


def test_bucket_percentiles() -> None:
    end = datetime(2024, 5, 1, 10, 10, tzinfo=UTC)
    samples = [(datetime(2024, 5, 1, 10, 0, 1, tzinfo=UTC), float(v)) for v in range(1, 101)]
    samples += [(datetime(2024, 5, 1, 10, 10, tzinfo=UTC), 7.0), (datetime(2024, 5, 1, 10, 10, tzinfo=UTC), math.nan)]
    result = bucket_percentiles(samples, end=end, minutes=15, bucket_minutes=5, percentiles=(50, 95, 99.9))
    assert list(result) == ["p50", "p95", "p99.9"]
    assert [t for t, _ in result["p50"]] == [datetime(2024, 5, 1, 10, 0, tzinfo=UTC), end]  # 10:05 had none
    assert result["p50"][0][1] == pytest.approx(50.5)
    assert result["p95"][0][1] == pytest.approx(95.05)
    assert result["p95"][1][1] == 7.0
    assert line_chart(result, title="Latency", unit="ms")


def test_stacked_bar_chart_stacks_each_bucket_s_counts_with_a_legend() -> None:
    from router.ui.charts import stacked_bar_chart

    ok, bad = [4.0, 0.0, 6.0], [1.0, 2.0, 0.0]
    root = parse(stacked_bar_chart({"succeeded": series(ok), "failed": series(bad)}, title="Deliveries"))
    assert not by_class(root, "chart-line")  # counts are bars, not lines
    greens, reds = by_class(root, "chart-bar-0"), by_class(root, "chart-bar-1")
    assert [g.get("data-value") for g in greens] == ["4", "6"]
    assert [r.get("data-value") for r in reds] == ["1", "2"]
    first_green, first_red = greens[0], reds[0]
    assert math.isclose(
        float(first_red.get("y", "nan")) + float(first_red.get("height", "nan")), float(first_green.get("y", "nan")),
        abs_tol=0.02,
    )  # fmt: skip
    assert [t.text for t in by_class(root, "chart-legend")] == ["succeeded", "failed"]
    assert "succeeded: 10 in all; failed: 3 in all" in (root.get("aria-label") or "")
