"""Durable capture: events are committed to the database before anyone is told they were accepted.

``EventWriter`` is a single writer task that group-commits whatever arrived while the previous
commit ran, so one commit covers many requests; each caller's future resolves only after the
commit. Repeats of a source's dedupe key are not inserted: the caller gets the first event's id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from router.faults import crash_point
from router.records.models import Event
from router.records.transactor import Transactor, next_batch

log = structlog.get_logger("router.capture")

Stored = tuple[str, bool]  # (event id, duplicate?)
OnCommitted = Callable[[list[str]], Awaitable[None]]
MAX_BATCH = 256


async def insert_events(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> list[Stored]:
    """Insert rows in the current transaction; a repeated (source, dedupe_key) keeps the first event."""
    return await conn.run_sync(store_rows, rows)


def store_rows(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[Stored]:
    """``insert_events`` on a synchronous connection (router/records/transactor.py runs whole transactions so)."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    keyed = [r for r in rows if r.get("dedupe_key")]
    plain = [r for r in rows if not r.get("dedupe_key")]
    if plain:
        conn.execute(insert(Event), plain)
    if not keyed:
        return [(r["id"], False) for r in rows]
    stmt = insert(Event).on_conflict_do_nothing(index_elements=["source", "dedupe_key"])
    conn.execute(stmt, keyed)
    by_source: dict[str, set[str]] = {}
    for r in keyed:
        by_source.setdefault(r["source"], set()).add(r["dedupe_key"])
    # One equality on source and an IN on keys per source, so SQLite uses the unique index (a row-value
    # IN list makes it scan the table).
    found: list[Any] = []
    for source, keys in by_source.items():
        result = conn.execute(
            select(Event.source, Event.dedupe_key, Event.id).where(Event.source == source, Event.dedupe_key.in_(keys))
        )
        found.extend(result.all())
    winner = {(s, k): i for s, k, i in found}
    out = []
    for r in rows:
        if r.get("dedupe_key"):
            first = winner[(r["source"], r["dedupe_key"])]
            out.append((first, first != r["id"]))
        else:
            out.append((r["id"], False))
    return out


class EventWriter:
    """Group-commits event rows from many concurrent requests on one connection."""

    def __init__(self, transactor: Transactor, on_committed: OnCommitted | None = None) -> None:
        self.transactor = transactor
        self.on_committed = on_committed
        self.queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[Stored]]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.background: set[asyncio.Task[None]] = set()
        self._pending: list[str] = []
        self._notifier: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="event-writer")

    async def stop(self) -> None:
        if self.task is not None:
            await self.queue.join()
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        if self.background:
            await asyncio.gather(*self.background, return_exceptions=True)

    async def store(self, row: dict[str, Any]) -> Stored:
        """Return once the row is committed (or raise if the database refused it)."""
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((row, future))  # unbounded: the writer takes everything there is each time
        return await future

    async def _run(self) -> None:
        while True:
            batch = await next_batch(self.queue, MAX_BATCH)
            try:
                results = await self.transactor.run(store_rows, [row for row, _ in batch])
            except Exception as exc:
                log.error("capture_failed", error=str(exc), batch=len(batch))
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                    self.queue.task_done()
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
                self.queue.task_done()
            fresh = [eid for eid, dup in results if not dup]
            if fresh and self.on_committed is not None:
                self._pending.extend(fresh)
                if self._notifier is None or self._notifier.done():
                    self._notifier = asyncio.create_task(self._notify())
                    self.background.add(self._notifier)
                    self._notifier.add_done_callback(self.background.discard)

    async def _notify(self) -> None:
        """Tell the workers about committed events: one call for everything committed while the last ran.

        Under load the calls are fewer than the commits (a call carries every batch committed during the
        previous one); idle, each commit is told at once.
        """
        assert self.on_committed is not None
        crash_point("after_commit")  # test-only (router/faults.py): committed (202 given), workers not yet told
        while self._pending:
            ids, self._pending = self._pending, []
            try:
                await self.on_committed(ids)
            except Exception as exc:  # Redis down: the workers find the events when they next look
                log.warning("enqueue_failed", error=str(exc), events=len(ids))
