"""The ledger writer: step outcomes from many concurrent runs, committed together.

Each run records a step's outcome (its attempt, the step's new state, the run's and event's when they
end) as one *unit* of statements, and waits for ``write(unit)`` before it starts its next step — the
ledger guarantee: a step is never begun before the one before it is on record. Units that arrive while
a commit is running are committed together in the next transaction, one ``executemany`` per statement,
so a worker delivering thousands of steps a second commits a few hundred times a second, and an idle
worker commits each unit at once (the batch grows with the load, as in Hatchet's buffered writers).

When a batch fails, its units are retried one transaction each, so one bad unit fails only its own
caller; a failure that persists reaches the caller as the exception, and the run is left for the
reconciler exactly as if the worker had stopped there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

from router.records.transactor import Transactor, next_batch

log = structlog.get_logger("router.ledger")

Op = tuple[Executable, dict[str, Any]]
"""One statement (with bind parameters) and the values of one execution."""

MAX_UNITS = 512


async def execute_ops(conn: AsyncConnection, ops: Sequence[Op]) -> None:
    """Run the ops in order, grouping consecutive runs of the same statement into one executemany."""
    await conn.run_sync(run_ops, ops)


def run_ops(conn: Connection, ops: Sequence[Op]) -> None:
    """``execute_ops`` on a synchronous connection (router/records/transactor.py runs whole transactions so)."""
    index = 0
    while index < len(ops):
        stmt = ops[index][0]
        end = index + 1
        while end < len(ops) and ops[end][0] is stmt:
            end += 1
        params = [p for _, p in ops[index:end]]
        conn.execute(stmt, params if len(params) > 1 else params[0])
        index = end


def merge_units(units: Sequence[Sequence[Op]], order: Sequence[Executable] = ()) -> list[Op]:
    """All units' ops, each statement's executions together: statements listed in ``order`` first, in
    that order (attempts before steps, steps before runs, runs before the event states read from them),
    then any other in the order it first appears. Each unit must list its statements in that order too.
    """
    rank = {id(stmt): n for n, stmt in enumerate(order)}
    groups: dict[int, list[Op]] = {}
    for unit in units:
        for op in unit:
            groups.setdefault(id(op[0]), []).append(op)
    ordered = sorted(groups.items(), key=lambda item: rank.get(item[0], len(rank)))
    return [op for _, group in ordered for op in group]


class LedgerWriter:
    """One task committing units of statements for many callers; each caller returns after its commit."""

    def __init__(self, transactor: Transactor, order: Sequence[Executable] = ()) -> None:
        self.transactor = transactor
        self.order = tuple(order)
        self.queue: asyncio.Queue[tuple[list[Op], asyncio.Future[None]]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.commits = 0
        self.units = 0

    def start(self) -> LedgerWriter:
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name="ledger-writer")
        return self

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        if self.task is None:
            return
        with contextlib.suppress(asyncio.CancelledError):
            await self.queue.join()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.task = None

    async def write(self, unit: list[Op]) -> None:
        """Return once ``unit`` is committed (raise what the database raised if it could not be)."""
        if not unit:
            return
        if self.task is None or self.task.done():
            await self.transactor.run(run_ops, unit)  # not started (or stopped): commit it directly
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((unit, future))
        await future

    async def _run(self) -> None:
        while True:
            batch = await next_batch(self.queue, MAX_UNITS)
            try:
                await self._commit(batch)
            finally:
                for _ in batch:
                    self.queue.task_done()

    async def _commit(self, batch: list[tuple[list[Op], asyncio.Future[None]]]) -> None:
        try:
            await self.transactor.run(run_ops, merge_units([unit for unit, _ in batch], self.order))
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            log.warning("ledger_batch_failed", error=describe(exc), units=len(batch))
            for unit, future in batch:  # one at a time: only the unit at fault fails
                try:
                    await self.transactor.run(run_ops, unit)
                except Exception as one:
                    _settle(future, one)
                else:
                    _settle(future, None)
            return
        self.commits += 1
        self.units += len(batch)
        for _, future in batch:
            _settle(future, None)


def describe(exc: BaseException) -> str:
    """A database error in one line, without the statement's parameters (they may hold payloads)."""
    reason = getattr(exc, "orig", None) or exc
    return f"{type(reason).__name__}: {str(reason).splitlines()[0] if str(reason) else ''}"


def _settle(future: asyncio.Future[None], exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)
