"""The overview's figures, counted in the database: exact bucket counts on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from router.records import db, stats
from router.records.buckets import bucket_counts
from router.records.eventlog import id_floor
from router.records.models import Attempt, Event, Run, RunStep

END = datetime(2026, 11, 25, 12, 7, 30, tzinfo=UTC)
WINDOW = stats.Window(END, minutes=60, bucket_minutes=15)  # buckets 11:15, 11:30, 11:45, 12:00


def at(hour: int, minute: int, second: int = 0, micro: int = 0) -> datetime:
    return datetime(2026, 11, 25, hour, minute, second, micro, tzinfo=UTC)


def ulid_at(moment: datetime) -> str:
    return id_floor(moment)[:10] + os.urandom(10).hex().upper()[:16].translate(str.maketrans("ILOU", "JKMN"))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(database_url)
    await db.migrate(engine)
    yield engine
    await engine.dispose()


async def add_event(engine: AsyncEngine, received: datetime, source: str = "shop", event_id: str = "") -> str:
    event_id = event_id or ulid_at(received)
    row = {
        "id": event_id,
        "source": source,
        "received_at": received,
        "method": "POST",
        "path": f"/hooks/{source}",
        "headers": {},
        "query": {},
        "content_type": "application/json",
        "body": {"n": 1},
        "raw_body": b'{"n": 1}',
        "status": "succeeded",
    }
    async with engine.begin() as conn:
        await conn.execute(insert(Event), [row])
    return event_id


async def add_attempt(
    engine: AsyncEngine,
    event_id: str,
    started: datetime,
    *,
    outcome: str = "succeeded",
    duration_ms: float = 100.0,
    run_created: datetime | None = None,
    url: str = "https://api.example.com/hook",
    error: str | None = None,
) -> None:
    """A run with one step and one attempt (attempts get their ids in the order they are added)."""
    run_id, step_id = ulid_at(run_created or started), ulid_at(started)
    async with engine.begin() as conn:
        await conn.execute(
            insert(Run),
            [
                {
                    "id": run_id,
                    "event_id": event_id,
                    "rule_id": "r",
                    "status": outcome,
                    "created_at": run_created or started,
                }
            ],
        )
        await conn.execute(
            insert(RunStep),
            [
                {
                    "id": step_id,
                    "run_id": run_id,
                    "position": 0,
                    "step_id": "s",
                    "action": "http",
                    "status": outcome,
                    "idempotency_key": f"{event_id}:r:s:{run_id}",
                    "attempts_count": 1,
                }
            ],
        )
        request = {"smtp": url.removeprefix("smtp://")} if url.startswith("smtp://") else {"method": "POST", "url": url}
        await conn.execute(
            insert(Attempt),
            [
                {
                    "run_step_id": step_id,
                    "number": 1,
                    "started_at": started,
                    "duration_ms": duration_ms,
                    "request": request,
                    "outcome": outcome,
                    "error": error,
                    "retryable": False,
                }
            ],
        )


def counts(series: list[tuple[datetime, Any]]) -> list[Any]:
    return [n for _, n in series]


def test_window_buckets_are_those_of_the_charts() -> None:
    assert WINDOW.starts == [at(11, 15), at(11, 30), at(11, 45), at(12, 0)]
    assert WINDOW.starts == [t for t, _ in bucket_counts([], end=END, minutes=60, bucket_minutes=15)]
    assert stats.Window.named("24h", END).starts[-1] == at(12, 0)
    assert len(stats.Window.named("24h", END).starts) == 96
    assert stats.Window.named("1h", END).starts[-1] == at(12, 7)


async def test_events_per_bucket_counts_exactly_at_the_edges(engine: AsyncEngine) -> None:
    for moment in [
        at(11, 14, 59, 999999),  # before the first bucket
        at(11, 15),  # the first bucket's first instant
        at(11, 29, 59, 999999),
        at(11, 30),
        at(11, 30, 1),
        at(11, 30, 2),
        at(12, 7, 30),  # the end itself counts
        at(12, 7, 30, 1000),  # after the end (ids carry milliseconds)
    ]:
        await add_event(engine, moment)
    async with AsyncSession(engine) as session:
        series = await stats.events_per_bucket(session, WINDOW)
    assert series == [(at(11, 15), 2), (at(11, 30), 3), (at(11, 45), 0), (at(12, 0), 1)]
    # the same as the charts' own bucketing of the same times
    expected = bucket_counts(
        [at(11, 15), at(11, 29, 59, 999999), at(11, 30), at(11, 30, 1), at(11, 30, 2), at(12, 7, 30)],
        end=END,
        minutes=60,
        bucket_minutes=15,
    )
    assert series == expected


async def test_deliveries_and_failures_per_bucket(engine: AsyncEngine) -> None:
    event = await add_event(engine, at(11, 0))
    await add_attempt(engine, event, at(11, 10))  # before the window
    await add_attempt(engine, event, at(11, 16))
    await add_attempt(engine, event, at(11, 17), outcome="failed", error="503")
    await add_attempt(engine, event, at(11, 59, 59), outcome="failed", error="timeout")
    await add_attempt(engine, event, at(12, 0))
    await add_attempt(engine, event, at(12, 1))
    async with AsyncSession(engine) as session:
        result = await stats.deliveries_per_bucket(session, WINDOW)
    assert counts(result.succeeded) == [1, 0, 0, 2]
    assert counts(result.failed) == [1, 0, 1, 0]
    assert [t for t, _ in result.failed] == WINDOW.starts


async def test_no_attempts_gives_empty_series(engine: AsyncEngine) -> None:
    async with AsyncSession(engine) as session:
        result = await stats.deliveries_per_bucket(session, WINDOW)
        latency = await stats.latency_per_bucket(session, WINDOW)
        failing = await stats.failing_destinations(session, at(11, 0))
        assert await stats.first_attempt_id(session, at(11, 0)) is None
    assert counts(result.succeeded) == [0, 0, 0, 0]
    assert latency == {"p50": [], "p95": []}
    assert failing == []


async def test_first_attempt_id_is_a_safe_lower_bound(engine: AsyncEngine) -> None:
    event = await add_event(engine, at(6, 0))
    for hour in range(6, 13):  # one attempt per half hour, 06:00 … 12:30
        await add_attempt(engine, event, at(hour, 0))
        await add_attempt(engine, event, at(hour, 30))
    async with AsyncSession(engine) as session:
        first = await stats.first_attempt_id(session, at(11, 15))
        ids = {row.started_at.astimezone(UTC): row.id for row in (await session.execute(Attempt.__table__.select()))}
    assert first is not None
    assert all(i >= first for moment, i in ids.items() if moment >= at(11, 15))
    assert first > ids[at(7, 0)]  # it does skip what is clearly older (the margin is two hours)


async def test_latency_percentiles_from_receipt_or_replay(engine: AsyncEngine) -> None:
    event = await add_event(engine, at(11, 30))
    for second in (1, 2, 3, 4):  # latencies 1.5, 2.5, 3.5, 4.5 s in the 11:30 bucket (the run began at 11:30)
        await add_attempt(engine, event, at(11, 30, second), duration_ms=500, run_created=at(11, 30))
    await add_attempt(engine, event, at(11, 31), outcome="failed", duration_ms=9000)  # failures are not latency
    old = await add_event(engine, at(9, 0))  # replayed at 12:01: measured from the new run
    await add_attempt(engine, old, at(12, 1, 2), duration_ms=1000, run_created=at(12, 1))
    async with AsyncSession(engine) as session:
        result = await stats.latency_per_bucket(session, WINDOW)
    p50 = dict(result["p50"])
    p95 = dict(result["p95"])
    assert set(p50) == {at(11, 30), at(12, 0)}
    assert p50[at(11, 30)] == pytest.approx(3.0, abs=1e-3)
    assert p95[at(11, 30)] == pytest.approx(4.35, abs=1e-3)
    assert p50[at(12, 0)] == pytest.approx(3.0, abs=1e-3)


async def test_latency_samples_evenly_beyond_the_cap(engine: AsyncEngine) -> None:
    event = await add_event(engine, at(11, 45))
    for second in range(10):
        await add_attempt(engine, event, at(11, 45, second), duration_ms=0, run_created=at(11, 45))
    async with AsyncSession(engine) as session:
        full = await stats.latency_per_bucket(session, WINDOW)
        sampled = await stats.latency_per_bucket(session, WINDOW, sample=5)
    assert full["p50"] == [(at(11, 45), pytest.approx(4.5, abs=1e-3))]
    assert len(sampled["p50"]) == 1  # every other attempt: still a value for the bucket
    assert 0 <= sampled["p50"][0][1] <= 9


async def test_source_activity(engine: AsyncEngine) -> None:
    await add_event(engine, at(10, 0), "shop")
    await add_event(engine, at(11, 20), "shop")
    last = await add_event(engine, at(12, 5), "shop")
    only_old = await add_event(engine, at(8, 0), "github")
    async with AsyncSession(engine) as session:
        activity = await stats.source_activity(session, ["shop", "github", "quiet"], at(11, 0))
    assert activity["shop"].count == 2
    assert activity["shop"].last_event_id == last
    assert activity["shop"].last_event_at == at(12, 5)
    assert (activity["github"].count, activity["github"].last_event_id) == (0, only_old)
    assert activity["github"].last_event_at == at(8, 0)
    assert (activity["quiet"].count, activity["quiet"].last_event_at) == (0, None)


async def test_failing_destinations_group_by_host_with_the_latest_error(engine: AsyncEngine) -> None:
    event = await add_event(engine, at(11, 0))
    await add_attempt(engine, event, at(9, 0), outcome="failed", url="https://old.example/x", error="too old")
    await add_attempt(engine, event, at(11, 20), outcome="failed", url="https://api.example.com/a", error="502 first")
    await add_attempt(
        engine, event, at(11, 25), outcome="failed", url="https://API.example.com:443/b", error="503 last"
    )
    await add_attempt(engine, event, at(11, 26), url="https://api.example.com/ok")  # a success is no failure
    await add_attempt(engine, event, at(11, 40), outcome="failed", url="http://10.0.0.1:8080/x", error="refused")
    await add_attempt(engine, event, at(11, 41), outcome="failed", url="smtp://mail.local:25", error="421")
    async with AsyncSession(engine) as session:
        failing = await stats.failing_destinations(session, at(11, 0))
    assert [(d.destination, d.failures, d.last_error) for d in failing] == [
        ("https://api.example.com:443", 2, "503 last"),
        ("http://10.0.0.1:8080", 1, "refused"),
        ("smtp://mail.local:25", 1, "421"),
    ]
    assert failing[0].last_at == at(11, 25)


async def test_many_events_are_counted_in_the_database(engine: AsyncEngine) -> None:
    """A day of events (one a minute): 24 h in 96 buckets of 15, each with 15 (the partial last one fewer)."""
    rows = []
    start = END - timedelta(hours=30)
    for i in range(30 * 60):
        moment = start + timedelta(minutes=i, seconds=1)
        rows.append(
            {
                "id": ulid_at(moment),
                "source": "bulk",
                "received_at": moment,
                "method": "POST",
                "path": "/hooks/bulk",
                "headers": {},
                "query": {},
                "body": None,
                "raw_body": b"",
                "status": "received",
            }
        )
    async with engine.begin() as conn:
        await conn.execute(insert(Event), rows)
    window = stats.Window.named("24h", END)
    async with AsyncSession(engine) as session:
        series = await stats.events_per_bucket(session, window)
    expected = bucket_counts([r["received_at"] for r in rows], end=END, minutes=24 * 60, bucket_minutes=15)
    assert series == expected
    assert sum(n for _, n in series) == sum(n for _, n in expected) > 1400
