"""Figures for the overview: events, deliveries, failures and latency per time bucket, and per source.

Plain functions over an ``AsyncSession`` that count in the database (one row per bucket comes back)
and work on SQLite and PostgreSQL alike. They lean on indexes that exist (router/records/models.py):

- events: ids are ULIDs, made when the event arrives, so "received in this bucket" is an id range:
  each bucket is counted on the primary key alone, without reading a row; per-source figures use
  ``ix_events_source_id``.
- attempts: their integer ids grow as attempts are written (when they end), so the first attempt of
  a time range is found by a binary search on the primary key (``first_attempt_id``), and the range
  is read from there, grouped by the minute (cheap on both databases) and summed into buckets.

Definitions (docs/ui.md repeats them):

- a **delivery** is an attempt of a step (one request to a destination), counted at its start;
  ``succeeded`` and ``failed`` split them by outcome;
- **latency** is how long a step took to be delivered: from when the event was received (or, for a
  replay, when its run was created) to the end of the step's successful attempt, retries included;
  p50 and p95 per bucket, from at most ``LATENCY_SAMPLE`` attempts (an even sample beyond that).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, cached_property
from typing import Any

from sqlalchemy import ColumnElement, Float, case, cast, extract, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from router.pipeline.destinations import url_destination
from router.records.buckets import bucket_counts, percentile
from router.records.eventlog import as_utc, id_floor
from router.records.models import Attempt, Event, Run, RunStep
from router.records.status import AttemptOutcome

RANGES = {"1h": (60, 1), "6h": (360, 5), "24h": (24 * 60, 15)}  # name: (minutes, bucket minutes)
LATENCY_SAMPLE = 5_000
FAILURE_SCAN = 20_000
ATTEMPT_MARGIN = timedelta(hours=2)  # longer than any attempt lasts (job_timeout is at most an hour)

Series = list[tuple[datetime, int]]


@dataclass(frozen=True)
class Window:
    """``minutes`` up to ``end`` in ``bucket_minutes`` buckets aligned to the clock (see router.records.buckets)."""

    end: datetime
    minutes: int = 24 * 60
    bucket_minutes: int = 15

    @classmethod
    def named(cls, name: str, end: datetime) -> Window:
        minutes, bucket = RANGES[name]
        return cls(as_utc(end), minutes, bucket)

    @cached_property
    def starts(self) -> list[datetime]:
        return [t for t, _ in bucket_counts([], end=self.end, minutes=self.minutes, bucket_minutes=self.bucket_minutes)]

    @cached_property
    def first(self) -> datetime:
        return self.starts[0]

    @property
    def step(self) -> int:
        return self.bucket_minutes * 60

    def series(self, counts: dict[int, int]) -> Series:
        return [(t, counts.get(i, 0)) for i, t in enumerate(self.starts)]

    def index(self, moment: datetime) -> int | None:
        """The bucket holding ``moment`` (None outside the window)."""
        moment = as_utc(moment)
        if moment < self.first or moment > self.end:
            return None
        return int((moment - self.first).total_seconds()) // self.step


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _minute(column: Any, dialect: str) -> ColumnElement[Any]:
    """The minute a time falls in: cheap to compute and to group by (buckets are whole minutes)."""
    if dialect == "sqlite":  # stored as text 'YYYY-MM-DD HH:MM:SS.ffffff'
        return func.substr(column, 1, 16)
    return func.date_trunc("minute", column)


def _bucket_of(w: Window) -> Callable[[Any], int | None]:
    """The bucket index of a minute as ``_minute`` gives it (a string on SQLite), remembered per minute."""

    @cache
    def index(value: Any) -> int | None:
        moment = datetime.strptime(value, "%Y-%m-%d %H:%M").replace(tzinfo=UTC) if isinstance(value, str) else value
        return w.index(moment)

    return index


def _epoch(column: Any, dialect: str) -> ColumnElement[float]:
    """Seconds since 1970 with their fraction."""
    if dialect == "sqlite":
        return (func.julianday(column) - 2440587.5) * 86400.0
    return cast(extract("epoch", column), Float)


async def events_per_bucket(session: AsyncSession, w: Window) -> Series:
    """How many events were received in each bucket (by the time in their id: when they arrived)."""
    edges = [*w.starts[1:], w.end + timedelta(milliseconds=1)]
    counts = [
        select(func.count()).where(Event.id >= id_floor(low), Event.id < id_floor(high)).scalar_subquery()
        for low, high in zip(w.starts, edges, strict=True)
    ]
    row = (await session.execute(select(*counts))).one()
    return [(start, int(n)) for start, n in zip(w.starts, row, strict=True)]


async def first_attempt_id(session: AsyncSession, since: datetime) -> int | None:
    """An attempt id below which no attempt started at ``since`` or later; None when there are no attempts.

    Ids are given as attempts are written, when they end, so ids follow start times up to an
    attempt's duration: a binary search on the primary key for the first attempt that started after
    ``since - ATTEMPT_MARGIN`` finds a safe lower bound in about log2(n) index lookups.
    """
    known: dict[datetime, int | None] = session.info.setdefault("first_attempt_id", {})
    if since in known:  # the overview asks three times for the same range
        return known[since]
    low, high = (await session.execute(select(func.min(Attempt.id), func.max(Attempt.id)))).one()
    if low is None:
        return None
    bound = as_utc(since) - ATTEMPT_MARGIN
    high += 1  # the answer is in [low, high]; high means "after every attempt"
    while low < high:
        middle = (low + high) // 2
        found, started = (
            await session.execute(
                select(Attempt.id, Attempt.started_at).where(Attempt.id >= middle).order_by(Attempt.id).limit(1)
            )
        ).one()
        if started >= bound:
            high = middle
        else:
            low = found + 1
    known[since] = int(low)
    return int(low)


def _attempts_in(w: Window, first_id: int) -> list[ColumnElement[bool]]:
    return [Attempt.id >= first_id, Attempt.started_at >= w.first, Attempt.started_at <= w.end]


@dataclass
class Deliveries:
    """Attempts per bucket by outcome."""

    succeeded: Series
    failed: Series


async def deliveries_per_bucket(session: AsyncSession, w: Window) -> Deliveries:
    """How many attempts started in each bucket, succeeded and failed."""
    first_id = await first_attempt_id(session, w.first)
    if first_id is None:
        return Deliveries(w.series({}), w.series({}))
    minute = _minute(Attempt.started_at, _dialect(session)).label("minute")
    rows = await session.execute(
        select(
            minute,
            func.sum(case((Attempt.outcome == AttemptOutcome.SUCCEEDED, 1), else_=0)),
            func.sum(case((Attempt.outcome == AttemptOutcome.SUCCEEDED, 0), else_=1)),
        )
        .where(*_attempts_in(w, first_id))
        .group_by(minute)
    )
    ok: dict[int, int] = {}
    bad: dict[int, int] = {}
    bucket_of = _bucket_of(w)
    for at, good, failed in rows:
        index = bucket_of(at)
        if index is not None:
            ok[index] = ok.get(index, 0) + int(good or 0)
            bad[index] = bad.get(index, 0) + int(failed or 0)
    return Deliveries(w.series(ok), w.series(bad))


async def latency_per_bucket(
    session: AsyncSession, w: Window, *, sample: int = LATENCY_SAMPLE, percentiles: Sequence[float] = (50, 95)
) -> dict[str, list[tuple[datetime, float]]]:
    """Delivery latency in seconds (see the module's docstring), percentiles per bucket ("p50", "p95").

    A bucket without deliveries has no point. Beyond ``sample`` deliveries an even sample is used.
    """
    out: dict[str, list[tuple[datetime, float]]] = {f"p{p:g}": [] for p in percentiles}
    first_id = await first_attempt_id(session, w.first)
    if first_id is None:
        return out
    dialect = _dialect(session)
    conds = [*_attempts_in(w, first_id), Attempt.outcome == AttemptOutcome.SUCCEEDED]
    total = await session.scalar(select(func.count()).select_from(Attempt).where(*conds)) or 0
    if total > sample:
        conds.append(Attempt.id % (-(-total // sample)) == 0)
    began = (func.max if dialect == "sqlite" else func.greatest)(
        _epoch(Event.received_at, dialect), _epoch(Run.created_at, dialect)
    )
    latency = _epoch(Attempt.started_at, dialect) + Attempt.duration_ms / literal(1000.0) - began
    rows = await session.execute(
        select(_minute(Attempt.started_at, dialect), latency)
        .join(RunStep, RunStep.id == Attempt.run_step_id)
        .join(Run, Run.id == RunStep.run_id)
        .join(Event, Event.id == Run.event_id)
        .where(*conds)
    )
    values: dict[int, list[float]] = {}
    bucket_of = _bucket_of(w)
    for at, seconds in rows:
        index = bucket_of(at)
        if index is not None:
            values.setdefault(index, []).append(max(0.0, float(seconds)))
    starts = w.starts
    for index in sorted(values):
        ordered = sorted(values[index])
        for p in percentiles:
            out[f"p{p:g}"].append((starts[index], percentile(ordered, p)))
    return out


@dataclass
class SourceActivity:
    """A source's latest event (ever) and how many events it received since a moment."""

    source: str
    last_event_id: str | None
    last_event_at: datetime | None
    count: int


async def source_activity(session: AsyncSession, sources: Iterable[str], since: datetime) -> dict[str, SourceActivity]:
    """For each source: its last event and its event count since ``since`` (by id: a ULID's time)."""
    names = list(sources)
    if not names:
        return {}
    counts = dict(
        (
            await session.execute(
                select(Event.source, func.count())
                .where(Event.source.in_(names), Event.id >= id_floor(as_utc(since)))
                .group_by(Event.source)
            )
        ).all()
    )
    last = {name: await session.scalar(select(func.max(Event.id)).where(Event.source == name)) for name in names}
    ids = [i for i in last.values() if i]
    times = dict((await session.execute(select(Event.id, Event.received_at).where(Event.id.in_(ids)))).all())
    out = {}
    for name in names:
        last_id = last[name]
        out[name] = SourceActivity(name, last_id, times.get(last_id) if last_id else None, int(counts.get(name, 0)))
    return out


@dataclass
class FailingDestination:
    """A destination with failed attempts in the range: how many, and the latest one's error."""

    destination: str
    failures: int
    last_error: str | None
    last_at: datetime


def _destination(url: str | None, smtp: str | None) -> str | None:
    if smtp:
        return f"smtp://{smtp}"
    if not url:
        return None
    try:
        return url_destination(url)
    except ValueError:  # a stored URL with a bad port: show it as it is
        return url[:200]


async def failing_destinations(
    session: AsyncSession, since: datetime, *, scan: int = FAILURE_SCAN
) -> list[FailingDestination]:
    """Destinations with failed attempts since ``since`` (the newest ``scan`` failures), most failures first."""
    first_id = await first_attempt_id(session, since)
    if first_id is None:
        return []
    since = as_utc(since)
    rows = await session.execute(
        select(
            Attempt.id,
            Attempt.started_at,
            Attempt.request["url"].as_string(),
            Attempt.request["smtp"].as_string(),
        )
        .where(Attempt.id >= first_id, Attempt.started_at >= since, Attempt.outcome == AttemptOutcome.FAILED)
        .order_by(Attempt.id.desc())
        .limit(scan)
    )
    found: dict[str, list[Any]] = {}  # destination: [failures, latest id, latest time]
    for attempt_id, started, url, smtp in rows:
        key = _destination(url, smtp)
        if key is None:
            continue
        entry = found.setdefault(key, [0, attempt_id, started])
        entry[0] += 1
    latest = [entry[1] for entry in found.values()]
    errors: dict[int, str | None] = {
        attempt_id: error
        for attempt_id, error in await session.execute(select(Attempt.id, Attempt.error).where(Attempt.id.in_(latest)))
    }
    out = [FailingDestination(key, n, errors.get(last), at) for key, (n, last, at) in found.items()]
    return sorted(out, key=lambda d: (-d.failures, d.destination))
