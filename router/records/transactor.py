"""A whole transaction in one call, for the three writers of the hot path (ingest, claims, the ledger).

On SQLite each ``Transactor`` runs its transactions in a thread of its own, with a synchronous SQLAlchemy
connection: one hand-off between the event loop and the thread per transaction, where the asyncio driver
makes one per statement. Every such transaction also takes a write lock that all processes on the host
share (``flock`` on a file beside the database) before ``BEGIN IMMEDIATE``. SQLite lets one writer in at
a time and has the others sleep and retry (1, 2, 5 … up to 100 ms between tries); under load the sleeps,
not the work, set the pace, and ingest's p99 went to hundreds of milliseconds while a worker delivered.
Queued on the file lock instead, the next writer starts the moment the last one commits.

On PostgreSQL, which has row locks and no single writer, the transaction simply runs on the event loop
(``AsyncConnection.run_sync``: the same synchronous function, its statements awaited through asyncpg).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from router.records import db

T = TypeVar("T")
_BEGIN_IMMEDIATE = text("BEGIN IMMEDIATE")


async def next_batch(queue: asyncio.Queue[T], most: int) -> list[T]:
    """A group-committing writer's next batch: wait for one item, then take those already queued, ``most`` in all."""
    batch = [await queue.get()]
    while len(batch) < most and not queue.empty():
        batch.append(queue.get_nowait())
    return batch


class Transactor:
    def __init__(self, engine: AsyncEngine, *, name: str, durable: bool = False) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self._sync: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock_fd: int | None = None
        self._lock_path: str | None = None
        if self.sqlite:
            self._sync = db.create_sync_engine(engine.url.render_as_string(hide_password=False), durable=durable)
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite-{name}")
            path = engine.url.database
            if path and path != ":memory:":
                self._lock_path = f"{path}.write.lock"

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` in one transaction (committed when it returns, rolled back if it raises)."""
        if self._executor is None:
            async with self.engine.begin() as conn:
                return await conn.run_sync(fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run_sqlite, fn, args)

    def _run_sqlite(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        assert self._sync is not None
        fd = self._lock()
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            with self._sync.begin() as conn:
                conn.execute(_BEGIN_IMMEDIATE)  # the driver has begun nothing yet: this is the transaction
                return fn(conn, *args)
        finally:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _lock(self) -> int | None:
        if self._lock_path is not None and self._lock_fd is None:
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._lock_fd

    async def close(self) -> None:
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.get_running_loop().run_in_executor(executor, self._close_in_thread)
            executor.shutdown(wait=True)

    def _close_in_thread(self) -> None:
        if self._sync is not None:
            self._sync.dispose()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
