"""Database engine, sessions and migrations (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event, text
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def _json(value: Any) -> str:
    """JSON columns through msgspec: ~30x faster than the stdlib on large event bodies."""
    return msgspec.json.encode(value, enc_hook=str).decode()


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, durable: bool = False) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout so writers wait instead of failing, and
    ``synchronous=NORMAL`` — or ``FULL`` with ``durable``, for the ingest writer: each of its commits is
    fsynced, so an event acknowledged with 2xx survives a power loss too (NORMAL survives a crash of the
    process, not of the machine; docs/delivery.md says what that costs the workers' bookkeeping).
    """
    if is_sqlite(url):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, json_serializer=_json, json_deserializer=msgspec.json.decode
        )
        _sqlite_pragmas(engine.sync_engine, durable)
        return engine
    pool = pool_size()
    return create_async_engine(
        url,
        pool_size=pool,
        max_overflow=pool,
        pool_pre_ping=True,
        json_serializer=_json,
        json_deserializer=msgspec.json.decode,
    )


@asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that reads rows it is about to change.

    On SQLite it holds the database's write lock from its start (``BEGIN IMMEDIATE``, waiting for it
    like any writer), so no other writer can commit between its reads and its writes; PostgreSQL's
    callers lock the rows they read instead (``FOR UPDATE``).
    """
    async with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            await conn.execute(_BEGIN_IMMEDIATE)  # the driver begins no transaction of its own before
        yield conn


_BEGIN_IMMEDIATE = text("BEGIN IMMEDIATE")


def _sqlite_pragmas(engine: Engine, durable: bool) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()


def create_sync_engine(url: str, *, durable: bool = False) -> Engine:
    """A synchronous engine on the same SQLite file (the driver underneath aiosqlite), same settings: for a
    thread that runs whole transactions itself (router/records/transactor.py)."""
    assert is_sqlite(url), url
    engine = sa_create_engine(
        "sqlite://" + url.split("://", 1)[1],
        connect_args={"timeout": 30},
        json_serializer=_json,
        json_deserializer=msgspec.json.decode,
    )
    _sqlite_pragmas(engine, durable)
    return engine


def pool_size() -> int:
    """Connections each process keeps open to PostgreSQL (ROUTER_DATABASE_POOL_SIZE); as many more may open
    under load. Every web and worker process has its own pool: size PostgreSQL's max_connections for
    2 x pool x processes (docs/deploy.md)."""
    from router.settings import get_settings

    try:
        return get_settings().database_pool_size
    except Exception:  # a bad setting is reported where the settings are read; not here
        return 10


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for one change: committed when the block ends, rolled back (and closed) when it raises."""
    async with sessions() as session:
        yield session
        await session.commit()


def _alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest migration. Safe to run from several processes at once:
    PostgreSQL takes an advisory lock, SQLite a lock file beside the database."""

    def _upgrade(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(726354)"))
            command.upgrade(_alembic_config(connection), "head")
            connection.commit()
            return
        # SQLite: a migration that has to copy a table (batch mode) drops the old one; with foreign keys on,
        # that drop would delete every run of every event. The pragma only takes effect outside a
        # transaction, so: off, migrate and commit, then on again before the connection goes back to the pool.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            command.upgrade(_alembic_config(connection), "head")
            connection.commit()
        finally:
            connection.rollback()
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()

    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        async with engine.connect() as conn:
            await conn.run_sync(_upgrade)
        return
    with open(f"{path}.migrate.lock", "a+b") as lock:  # noqa: ASYNC230 - once at start-up
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        try:
            async with engine.connect() as conn:
                await conn.run_sync(_upgrade)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def schema_problems(url: str) -> list[str]:
    """What the database's schema lacks against this version: migrations not applied, and any difference
    between the tables and the models (alembic's autogenerate comparison). Empty when they match."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from router.records.models import Base

    def check(connection: Connection) -> list[str]:
        context = MigrationContext.configure(connection)
        applied = set(context.get_current_heads())
        script = ScriptDirectory.from_config(_alembic_config(connection))
        wanted = set(script.get_heads())
        out = []
        if applied != wanted:
            have = ", ".join(sorted(applied)) or "none (an empty database)"
            out.append(f"migrations applied: {have}; this version needs: {', '.join(sorted(wanted))}")
            return out
        for diff in compare_metadata(context, Base.metadata):
            out.append(f"schema differs from the models: {diff}")
        return out

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(check)
    finally:
        await engine.dispose()
