"""Retention: delete events (with their runs, steps and attempts) past their time or count, in small batches.

How long events are kept: ``ROUTER_RETENTION_DAYS`` and ``ROUTER_RETENTION_MAX_EVENTS`` (per source),
overridden per source by the rule files' ``retention: {days, max_events}``; 0 keeps everything. A
worker prunes every ``ROUTER_RETENTION_INTERVAL`` seconds (router/ops/chores.py; one worker at a time).

Deleting never blocks ingest for long: each transaction deletes one batch, sized so that it lasts about
``TARGET_SECONDS`` (the size adapts to what the last batch took, up to ``ROUTER_RETENTION_BATCH``), and
the pruner then pauses at least as long as the batch took. On SQLite, where one writer holds the whole
database, that bounds how long an incoming webhook can wait; on PostgreSQL deletes and inserts do not
wait for each other at all. The runs, steps and attempts go with their event (``ON DELETE CASCADE``).

Live work is never pruned: an event is deleted only when it has ended (succeeded, failed, unmatched) and
none of its runs is pending, running, retrying or held — checked inside the DELETE itself, so a run
created meanwhile (a replay) keeps its event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, delete, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from router.records.eventlog import id_floor
from router.records.models import Event, InboxRequest, Run
from router.records.status import EventStatus, RunStatus

log = structlog.get_logger("router.retention")

# How long one delete transaction may hold its locks. SQLite has one write lock for the whole database:
# every webhook waits while it is held, so a few milliseconds. PostgreSQL's deletes and inserts lock
# different rows and never wait for each other: longer batches only share the machine (at most half of it,
# since the pruner pauses as long as each batch took).
TARGET_SECONDS = {"sqlite": 0.005, "postgresql": 0.05}
FIRST_BATCH = 50
MIN_BATCH = 10
ENDED = (EventStatus.SUCCEEDED, EventStatus.FAILED, EventStatus.UNMATCHED)
RUN_ENDED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.DEAD)


@dataclass(frozen=True)
class Policy:
    days: float = 0
    max_events: int = 0

    @property
    def active(self) -> bool:
        return self.days > 0 or self.max_events > 0


def policies(default: Policy, sources: Mapping[str, Any]) -> dict[str, Policy]:
    """Each source's policy where it overrides the default (``retention:`` in its rule file)."""
    out: dict[str, Policy] = {}
    for source_id, source in sources.items():
        days = getattr(source, "retention_days", None)
        max_events = getattr(source, "retention_max_events", None)
        if days is not None or max_events is not None:
            out[source_id] = Policy(
                default.days if days is None else days, default.max_events if max_events is None else max_events
            )
    return out


@dataclass
class Report:
    events: int = 0
    inbox: int = 0
    batches: int = 0
    longest_batch_seconds: float = 0.0
    seconds: float = 0.0
    by_source: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "inbox_requests": self.inbox,
            "batches": self.batches,
            "longest_batch_ms": round(self.longest_batch_seconds * 1000, 2),
            "seconds": round(self.seconds, 2),
            "by_source": dict(sorted(self.by_source.items())),
        }


class Pruner:
    """Deletes in adaptive batches; ``keep_going()`` is asked between batches (a lock renewal, a deadline)."""

    def __init__(
        self,
        engine: AsyncEngine,
        default: Policy,
        overrides: Mapping[str, Policy],
        *,
        max_batch: int = 500,
        target: float | None = None,
        keep_going: Callable[[], Any] | None = None,
    ) -> None:
        self.engine, self.default, self.overrides = engine, default, dict(overrides)
        self.max_batch, self.keep_going = max_batch, keep_going
        self.target = target if target is not None else TARGET_SECONDS.get(engine.dialect.name, 0.005)
        self.batch = min(FIRST_BATCH, max_batch)
        self.report = Report()

    async def run(self, now: datetime | None = None) -> Report:
        now = now or datetime.now(UTC)
        started = time.perf_counter()
        for source, policy in self.overrides.items():
            if policy.active:
                await self._scope(now, policy, Event.source == source, [source])
        if self.default.active:
            others = Event.source.not_in(list(self.overrides)) if self.overrides else None
            await self._scope(now, self.default, others, None)
            if self.default.days > 0:
                await self._inbox(id_floor(now - timedelta(days=self.default.days)))
        self.report.seconds = time.perf_counter() - started
        if self.report.events or self.report.inbox:
            log.info("retention_pruned", **self.report.as_dict())
        return self.report

    async def _scope(self, now: datetime, policy: Policy, where: Any, sources: list[str] | None) -> None:
        bounds: list[Any] = []
        if policy.days > 0:
            bounds.append(Event.id < id_floor(now - timedelta(days=policy.days)))
        if policy.max_events > 0:
            for source in sources if sources is not None else await self._sources(where):
                cap = await self._cap(source, policy.max_events)
                if cap is not None:
                    bounds.append(and_(Event.source == source, Event.id <= cap))
        if not bounds:
            return
        scope = or_(*bounds) if where is None else and_(where, or_(*bounds))
        await self._delete_events(scope)

    async def _sources(self, where: Any) -> list[str]:
        query = select(Event.source).distinct()
        if where is not None:
            query = query.where(where)
        async with self.engine.connect() as conn:
            return list((await conn.scalars(query)).all())

    async def _cap(self, source: str, keep: int) -> str | None:
        """The newest id of ``source`` beyond the ``keep`` newest (it and older ones may go)."""
        async with self.engine.connect() as conn:
            found: str | None = await conn.scalar(
                select(Event.id).where(Event.source == source).order_by(Event.id.desc()).offset(keep).limit(1)
            )
        return found

    async def _delete_events(self, scope: Any) -> None:
        live = exists().where(Run.event_id == Event.id, Run.status.not_in(RUN_ENDED))
        after = ""
        while True:
            async with self.engine.connect() as conn:  # a read: takes no write lock
                rows = (
                    await conn.execute(
                        select(Event.id, Event.source)
                        .where(scope, Event.id > after, Event.status.in_(ENDED), ~live)
                        .order_by(Event.id)
                        .limit(self.batch)
                    )
                ).all()
            if not rows:
                return
            after = rows[-1].id
            ids = [r.id for r in rows]
            statement = delete(Event).where(Event.id.in_(ids), Event.status.in_(ENDED), ~live)  # live: checked again
            deleted, took = await self._write(statement)
            self._count(rows, deleted, took)
            await self._pause(took)
            if self.keep_going is not None and not await self.keep_going():
                return

    async def _inbox(self, floor: str) -> None:
        while True:
            async with self.engine.connect() as conn:
                ids = list(
                    (
                        await conn.scalars(
                            select(InboxRequest.id)
                            .where(InboxRequest.id < floor)
                            .order_by(InboxRequest.id)
                            .limit(self.batch)
                        )
                    ).all()
                )
            if not ids:
                return
            _deleted, took = await self._write(delete(InboxRequest).where(InboxRequest.id.in_(ids)))
            self.report.inbox += len(ids)
            await self._pause(took)

    async def _write(self, statement: Any) -> tuple[int, float]:
        """Run one delete in its own transaction; return the rows deleted and how long it held the write lock.

        On SQLite the transaction starts with BEGIN IMMEDIATE, so the time spent waiting for the lock (while
        ingest commits) is not counted as time holding it: the batch size follows what ingest waits for.
        """
        async with self.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            t0 = time.perf_counter()
            result = await conn.execute(statement, execution_options={"synchronize_session": False})
            await conn.commit()
            return result.rowcount, time.perf_counter() - t0

    def _count(self, rows: Sequence[Any], deleted: int, took: float) -> None:
        self.report.batches += 1
        self.report.events += deleted
        self.report.longest_batch_seconds = max(self.report.longest_batch_seconds, took)
        if deleted == len(rows):
            for r in rows:
                self.report.by_source[r.source] = self.report.by_source.get(r.source, 0) + 1
        # adapt the next batch to the target time
        if took < self.target / 2 and len(rows) == self.batch:
            self.batch = min(self.max_batch, self.batch * 2)
        elif took > self.target:
            self.batch = min(self.max_batch, max(MIN_BATCH, int(self.batch * self.target / took)))

    async def _pause(self, took: float) -> None:
        await asyncio.sleep(max(0.002, took))


async def prune(
    engine: AsyncEngine,
    default: Policy,
    sources: Mapping[str, Any],
    *,
    max_batch: int = 500,
    now: datetime | None = None,
    keep_going: Callable[[], Any] | None = None,
) -> Report:
    """Prune everything past its policy now; returns what was deleted."""
    pruner = Pruner(engine, default, policies(default, sources), max_batch=max_batch, keep_going=keep_going)
    return await pruner.run(now)


async def prune_chore(settings: Any, state: Any) -> Report | None:
    """The scheduled prune of a worker: holds a Redis lock (renewed per batch) so one worker prunes at a time."""
    default = Policy(settings.retention_days, settings.retention_max_events)
    sources = state.rules.current.sources
    if not default.active and not policies(default, sources):
        return None
    lock = state.redis.lock("router:ops:retention:lock", timeout=60)
    if not await lock.acquire(blocking=False):
        return None

    async def renew() -> bool:
        try:
            return bool(await lock.reacquire())
        except Exception:
            return False

    try:
        return await prune(
            engine=state.engine, default=default, sources=sources, max_batch=settings.retention_batch, keep_going=renew
        )
    finally:
        try:
            await lock.release()
        except Exception as exc:  # expired meanwhile: nothing to release
            log.debug("retention_lock_release_failed", error=str(exc))
