"""Whole transactions in one call: committed or rolled back, and SQLite's writers queued on one lock."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection

from router.records import db
from router.records.models import InboxRequest, new_id, utcnow
from router.records.transactor import Transactor

pytestmark = pytest.mark.postgres


def add(conn: Connection, name: str, count: int = 1, hold: float = 0.0) -> str:
    rows = [
        {
            "id": new_id(),
            "name": name,
            "received_at": utcnow(),
            "method": "POST",
            "path": "/",
            "headers": {},
            "query": {},
            "body_text": "",
            "body": None,
        }
        for _ in range(count)
    ]
    conn.execute(insert(InboxRequest), rows)
    if hold:
        time.sleep(hold)  # inside the transaction, holding the write lock
    return threading.current_thread().name


def fail(conn: Connection) -> None:
    add(conn, "rolled-back")
    raise RuntimeError("no")


async def count(engine: Any, name: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).where(InboxRequest.name == name)) or 0)


async def test_a_transaction_commits_when_it_returns_and_not_when_it_raises(database_url: str) -> None:
    engine = db.create_engine(database_url)
    await db.migrate(engine)
    writes = Transactor(engine, name="test")
    try:
        thread = await writes.run(add, "kept", 3)
        with pytest.raises(RuntimeError):
            await writes.run(fail)
        assert (await count(engine, "kept"), await count(engine, "rolled-back")) == (3, 0)
        if engine.dialect.name == "sqlite":  # SQLite's transactions run in the transactor's own thread
            assert thread.startswith("sqlite-test")
        async with engine.begin() as conn:
            await conn.execute(delete(InboxRequest))
    finally:
        await writes.close()
        await engine.dispose()


async def test_sqlite_writers_queue_on_the_shared_lock_instead_of_failing(tmp_path: Path) -> None:
    """Two transactors (as two processes have) writing at once: each waits for the other's commit."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    engine = db.create_engine(url)
    await db.migrate(engine)
    first, second = Transactor(engine, name="a"), Transactor(engine, name="b")
    try:
        started = time.monotonic()
        holding = asyncio.ensure_future(first.run(add, "a", 1, 1.0))  # holds the lock for a second
        await asyncio.sleep(0.2)
        await second.run(add, "b", 1)  # queued behind it, not refused with "database is locked"
        waited = time.monotonic() - started
        await holding
        many = await asyncio.gather(*(t.run(add, "many", 10) for _ in range(40) for t in (first, second)))
        assert (await count(engine, "a"), await count(engine, "b"), await count(engine, "many")) == (1, 1, 800)
    finally:
        await first.close()
        await second.close()
        await engine.dispose()
    assert waited >= 0.9  # it began only once the first had committed
    assert len(many) == 80
    assert (tmp_path / "r.db.write.lock").exists()
