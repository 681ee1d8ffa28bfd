"""Prometheus metrics: what the web and the workers count, and how a scrape is answered.

Counters and histograms are prometheus-client objects, bumped by one cheap call each (no await, no
I/O) where the thing happens:

- ``router_events_received_total{source, outcome}`` and ``router_ingest_seconds`` — ``ingest_finished``,
  once ``POST /hooks/{source}`` has answered, from its status (202 accepted, 200 duplicate, anything
  else rejected; router/api/ingest_asgi.py);
- ``router_step_attempts_total{rule, step, action, outcome}`` and ``router_delivery_seconds{action}`` —
  ``step_outcome`` once a step's outcome is recorded;
- ``router_rules_reload_errors_total`` — ``rules_reload_failed``.

Gauges are never kept per event: they are read when scraped (``Gauges``): from the database
(``router_queue_depth``, ``router_queue_oldest_seconds``, ``router_runs_dead``), from the rule set in
force (``router_rules_loaded``) and from the circuit breakers (``router_breaker_open{destination}``).

Labels stay bounded: sources, rules, steps and actions come from the rule files (a request to an
unknown source is counted under ``source="_unknown"``), destinations are scheme://host:port only.

``router serve --workers N`` runs N processes: the CLI points ``PROMETHEUS_MULTIPROC_DIR`` at a private
folder before they start, each process writes its counters there, and a scrape (answered by any of them)
sums every process's files (prometheus-client's multiprocess mode). A worker answers on its own port
(``router worker --metrics-port``) from its own process.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, disable_created_metrics, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from router.records.models import Event, Run
from router.records.status import EventStatus, RunStatus, StepStatus

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series: they double the output and no dashboard reads them

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNKNOWN_SOURCE = "_unknown"
DELIVERY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0)
STEP_OUTCOMES = set(StepStatus) - {StepStatus.PENDING, StepStatus.SUPERSEDED}


@dataclass(frozen=True)
class _Metrics:
    events_received: Counter
    ingest_seconds: Histogram
    step_attempts: Counter
    delivery_seconds: Histogram
    rules_reload_errors: Counter


@functools.cache
def _metrics() -> _Metrics:
    """The metrics, made on first use: by then the process knows whether it counts in memory or in files.

    prometheus-client decides that when it is imported, from PROMETHEUS_MULTIPROC_DIR; the CLI sets (serve)
    or drops (worker) that variable after its own imports, so it is read again here, before any value exists.
    """
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return _Metrics(
        events_received=Counter(
            "router_events_received",
            "Webhooks answered on POST /hooks/{source}: accepted (stored), duplicate (a repeat of a stored one) "
            "or rejected (refused, nothing stored).",
            ["source", "outcome"],
        ),
        ingest_seconds=Histogram(
            "router_ingest_seconds",
            "Time to answer POST /hooks/{source}, from the request reaching the handler to the answer's start.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        ),
        step_attempts=Counter(
            "router_step_attempts",
            "Steps executed, by how each ended: succeeded, failed (for good, or attempts exhausted), retrying, "
            "held (destination paused, failing or at its limit) or skipped (`when` was false).",
            ["rule", "step", "action", "outcome"],
        ),
        delivery_seconds=Histogram(
            "router_delivery_seconds",
            "From an event's arrival to one of its steps succeeding, retries included.",
            ["action"],
            buckets=(
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1.0,
                2.5,
                5.0,
                10.0,
                30.0,
                60.0,
                300.0,
                1800.0,
                3600.0,
                21600.0,
            ),
        ),
        rules_reload_errors=Counter(
            "router_rules_reload_errors",
            "Loads of the rule files that failed (the rule set in force was kept).",
        ),
    )


def families() -> list[Metric]:
    """Every counter and histogram of this process (made if not yet), as collected."""
    _metrics()
    return [f for f in REGISTRY.collect() if f.name.startswith("router_")]


def ingest_finished(sources: Mapping[str, Any], source: str, status: int, seconds: float) -> None:
    """Count one answered webhook: 202 accepted, 200 duplicate, anything else rejected."""
    outcome = "accepted" if status == 202 else "duplicate" if status == 200 else "rejected"
    m = _metrics()
    m.events_received.labels(source if source in sources else UNKNOWN_SOURCE, outcome).inc()
    m.ingest_seconds.observe(seconds)


def step_outcome(rule: str, step: str, action: str, outcome: str, received_at: str | datetime | None) -> None:
    """Count a step's recorded outcome; a success also observes the time since its event arrived.

    ``dead`` (attempts exhausted) is counted as ``failed``; ``router_runs_dead`` counts the dead runs.
    """
    if outcome not in STEP_OUTCOMES:
        return
    m = _metrics()
    m.step_attempts.labels(rule, step, action, "failed" if outcome == "dead" else outcome).inc()
    if outcome == "succeeded" and received_at is not None:
        arrived = datetime.fromisoformat(received_at) if isinstance(received_at, str) else received_at
        m.delivery_seconds.labels(action).observe(max(0.0, (datetime.now(UTC) - arrived).total_seconds()))


def rules_reload_failed() -> None:
    _metrics().rules_reload_errors.inc()


# -- gauges, read when scraped ---------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFigures:
    """Work waiting in the database: events not yet routed and runs whose (next) attempt is due."""

    depth: int
    oldest_seconds: float
    dead_runs: int


async def queue_figures(engine: AsyncEngine, now: datetime | None = None) -> QueueFigures:
    """Three indexed queries: received events (ix_events_status_received), due runs (ix_runs_status_next),
    dead runs (ix_runs_status_created)."""
    now = now or datetime.now(UTC)
    due_at = func.coalesce(Run.next_attempt_at, Run.created_at)
    async with engine.connect() as conn:
        events, oldest_event = (
            await conn.execute(
                select(func.count(), func.min(Event.received_at)).where(Event.status == EventStatus.RECEIVED)
            )
        ).one()
        runs, oldest_run = (
            await conn.execute(
                select(func.count(), func.min(due_at)).where(
                    Run.status.in_((RunStatus.PENDING, RunStatus.RETRYING)),
                    or_(Run.next_attempt_at.is_(None), Run.next_attempt_at <= now),
                )
            )
        ).one()
        dead = await conn.scalar(select(func.count()).where(Run.status == RunStatus.DEAD))
    oldest = [_aware(t) for t in (oldest_event, oldest_run) if t is not None]
    waited = (now - min(oldest)).total_seconds() if oldest else 0.0
    return QueueFigures(int(events) + int(runs), max(0.0, waited), int(dead or 0))


def _aware(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite's min() of a datetime column comes back as text
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def breakers_from_overview(entries: Iterable[Mapping[str, Any]]) -> dict[str, bool]:
    """``router.pipeline.destinations.overview()`` (what workers published) as destination → open?"""
    out: dict[str, bool] = {}
    for entry in entries:
        breaker = entry.get("breaker")
        if breaker:
            out[str(entry["destination"])] = breaker.get("state") in ("open", "half_open")
    return out


class Gauges(Collector):
    """Gauges whose values were read just before the scrape (never stored per event)."""

    def __init__(self, queue: QueueFigures | None, rules_loaded: int | None, breakers: Mapping[str, bool]) -> None:
        self.queue, self.rules_loaded, self.breakers = queue, rules_loaded, breakers

    def collect(self) -> Iterator[Metric]:
        if self.queue is not None:
            yield GaugeMetricFamily(
                "router_queue_depth",
                "Work waiting in the database: events not yet routed plus runs whose attempt is due.",
                value=self.queue.depth,
            )
            yield GaugeMetricFamily(
                "router_queue_oldest_seconds",
                "How long the oldest waiting work (event not routed, or run due) has waited.",
                value=self.queue.oldest_seconds,
            )
            yield GaugeMetricFamily(
                "router_runs_dead", "Runs whose retries are exhausted (dead letters).", value=self.queue.dead_runs
            )
        if self.rules_loaded is not None:
            yield GaugeMetricFamily(
                "router_rules_loaded", "Rules in force (file rules, UI rules, alert notifications).", self.rules_loaded
            )
        breaker = GaugeMetricFamily(
            "router_breaker_open", "1 while a destination's circuit breaker is open.", labels=["destination"]
        )
        for destination, is_open in sorted(self.breakers.items()):
            breaker.add_metric([destination], 1.0 if is_open else 0.0)
        yield breaker


class _Union(Collector):
    def __init__(self, *parts: Any) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        for part in self.parts:
            yield from part.collect()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def counters() -> Collector:
    """This process's counters, or every process's (summed from their files) in multiprocess mode."""
    _metrics()
    if multiprocess_dir() is None:
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def render(gauges: Gauges) -> bytes:
    """The text exposition of the counters and ``gauges``."""
    return generate_latest(_Union(counters(), gauges))


def scrape_registry(read_gauges: Callable[[], Gauges]) -> Collector:
    """For the worker's metrics port (a thread of prometheus-client's): its counters plus gauges read per scrape."""

    class _Live(Collector):
        def collect(self) -> Iterator[Metric]:
            yield from read_gauges().collect()

    _metrics()
    return _Union(REGISTRY, _Live())


def sample(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """The value of one sample in an exposition text (0 when absent): for tests and the docs' examples."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = dict(labels or {})
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in wanted.items()):
                total += s.value
    return total
