"""Figures over time: counts and percentiles per clock-aligned bucket, for the overview's stats and charts."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta


def _floor(moment: datetime, minutes: int) -> datetime:
    """The start of the ``minutes``-long bucket holding ``moment`` (wall clock, aligned to midnight)."""
    return moment - (moment.replace(tzinfo=None) - datetime.min) % timedelta(minutes=minutes)


def _buckets(end: datetime, minutes: int, bucket_minutes: int) -> tuple[datetime, timedelta, int]:
    if minutes <= 0 or bucket_minutes <= 0:
        raise ValueError("minutes and bucket_minutes must be positive")
    count = -(-minutes // bucket_minutes)
    step = timedelta(minutes=bucket_minutes)
    return _floor(end, bucket_minutes) - step * (count - 1), step, count


def _index(moment: datetime, first: datetime, step: timedelta, count: int, end: datetime) -> int | None:
    index = (moment - first) // step
    return index if 0 <= index < count and moment <= end else None


def bucket_counts(
    times: Iterable[datetime], *, end: datetime, minutes: int, bucket_minutes: int
) -> list[tuple[datetime, int]]:
    """How many ``times`` fall in each bucket: (bucket start, count), oldest first, empty buckets as 0.

    Buckets are ``bucket_minutes`` long and aligned to the clock (5-minute buckets start at :00, :05...);
    the last is the one holding ``end`` (so it is partial), and there are ceil(minutes / bucket_minutes)
    of them. Times after ``end`` or before the first bucket are not counted.
    """
    first, step, count = _buckets(end, minutes, bucket_minutes)
    counts = [0] * count
    for moment in times:
        index = _index(moment, first, step, count, end)
        if index is not None:
            counts[index] += 1
    return [(first + step * i, n) for i, n in enumerate(counts)]


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of sorted ``values``, interpolating linearly between ranks."""
    rank = (len(values) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


def bucket_percentiles(
    samples: Iterable[tuple[datetime, float]],
    *,
    end: datetime,
    minutes: int,
    bucket_minutes: int,
    percentiles: Sequence[float] = (50, 95),
) -> dict[str, list[tuple[datetime, float]]]:
    """Percentiles of the sample values in each bucket (buckets as in ``bucket_counts``), for ``line_chart``.

    Keys are "p50", "p95"...; a bucket without samples has no point (the line skips it).
    """
    first, step, count = _buckets(end, minutes, bucket_minutes)
    buckets: list[list[float]] = [[] for _ in range(count)]
    for moment, value in samples:
        index = _index(moment, first, step, count, end)
        if index is not None and math.isfinite(value):
            buckets[index].append(value)
    out: dict[str, list[tuple[datetime, float]]] = {f"p{p:g}": [] for p in percentiles}
    for i, values in enumerate(buckets):
        values.sort()
        for p in percentiles if values else ():
            out[f"p{p:g}"].append((first + step * i, percentile(values, p)))
    return out
