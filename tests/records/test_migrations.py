"""Upgrading from the previous release: a database at its schema (0004), with data in it, is upgraded by
`router db upgrade` on SQLite and PostgreSQL; `router db check` fails before and passes after."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import JSON, DateTime, LargeBinary, column, func, insert, select, table, text
from sqlalchemy.engine import Connection

from router.records import db
from router.records.models import AlertState, Attempt, Event, Run, RunStep, UiRule, User
from tests.conftest import REPO

PREVIOUS_RELEASE = "0004"
# The events table as the previous release had it (the model has gained columns since).
OLD_EVENTS = table(
    "events",
    *(column(name) for name in ("id", "source", "method", "path", "content_type", "status", "matched", "chain_depth")),
    column("received_at", DateTime(timezone=True)),
    column("headers", JSON),
    column("query", JSON),
    column("body", JSON),
    column("raw_body", LargeBinary),
)


def head_revision() -> str:
    """The newest migration this version ships (read from the migrations, so adding one needs no edit here)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS))
    (head,) = ScriptDirectory.from_config(config).get_heads()  # one line of history, one head
    return str(head)


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of its own: a SQLite file, or a PostgreSQL database made for this test and dropped after."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    url: str = request.getfixturevalue("fresh_postgres")
    return url


async def at_previous_release_with_data(url: str) -> None:
    """The schema of the previous release, and rows in every table it had that matters."""
    engine = db.create_engine(url)

    def upgrade(connection: Connection) -> None:
        command.upgrade(db._alembic_config(connection), PREVIOUS_RELEASE)

    now = datetime.now(UTC)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade)
        async with engine.begin() as conn:
            await conn.execute(
                insert(OLD_EVENTS).values(  # the columns the previous release had; later ones are added empty
                    id="01JOLDEVENT000000000000001",
                    source="shop",
                    received_at=now,
                    method="POST",
                    path="/hooks/shop",
                    headers={"x": "1"},
                    query={},
                    content_type="application/json",
                    body={"order": 7},
                    raw_body=b'{"order": 7}',
                    status="succeeded",
                    matched=1,
                    chain_depth=0,
                )
            )
            await conn.execute(
                insert(Run).values(
                    id="01JOLDRUN00000000000000001",
                    event_id="01JOLDEVENT000000000000001",
                    rule_id="r",
                    status="succeeded",
                    created_at=now,
                )
            )
            await conn.execute(
                insert(RunStep).values(
                    id="01JOLDSTEP0000000000000001",
                    run_id="01JOLDRUN00000000000000001",
                    position=0,
                    step_id="s",
                    action="http",
                    status="succeeded",
                    idempotency_key="k",
                    attempts_count=1,
                )
            )
            await conn.execute(
                insert(Attempt).values(
                    run_step_id="01JOLDSTEP0000000000000001",
                    number=1,
                    started_at=now,
                    duration_ms=3.0,
                    outcome="succeeded",
                    response_status=200,
                )
            )
            await conn.execute(
                insert(User).values(
                    id="01JOLDUSER0000000000000001",
                    username="ada",
                    password_hash="x",
                    role="admin",
                    disabled=False,
                    created_at=now,
                )
            )
            await conn.execute(
                insert(UiRule).values(
                    id="ui-rule",
                    source="shop",
                    yaml="id: ui-rule\n",
                    enabled=True,
                    version=1,
                    created_at=now,
                    updated_at=now,
                    updated_by="ada",
                )
            )
    finally:
        await engine.dispose()


def router(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
    env |= {"ROUTER_DATABASE_URL": url, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "router", *args], env=env, capture_output=True, text=True, timeout=120)


def test_upgrade_from_the_previous_release_keeps_the_data(empty_database: str) -> None:
    url = empty_database
    asyncio.run(at_previous_release_with_data(url))

    lagging = router(url, "db", "check")
    assert lagging.returncode == 1
    assert f"migrations applied: {PREVIOUS_RELEASE}; this version needs: {head_revision()}" in lagging.stderr
    assert "run `router db upgrade`" in lagging.stderr

    upgraded = router(url, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    checked = router(url, "db", "check")
    assert checked.returncode == 0, checked.stderr
    assert "matches this version's schema" in checked.stdout

    async def after() -> tuple[dict[str, int], dict[str, object]]:
        engine = db.create_engine(url)
        try:
            async with engine.begin() as conn:
                found = {
                    m.__tablename__: int(await conn.scalar(select(func.count()).select_from(m)) or 0)
                    for m in (Event, Run, RunStep, Attempt, User, UiRule)
                }
                event = (await conn.execute(select(Event.body, Event.raw_body, Event.headers))).one()
                await conn.execute(  # the new table works
                    insert(AlertState).values(
                        alert_id="a",
                        subject="",
                        kind="backlog",
                        status="ok",
                        created_at=datetime.now(UTC),
                        updated_at=datetime.now(UTC),
                    )
                )
                version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
            return found, {"body": event.body, "raw": bytes(event.raw_body), "headers": event.headers, "v": version}
        finally:
            await engine.dispose()

    found, event = asyncio.run(after())
    assert found == {"events": 1, "runs": 1, "run_steps": 1, "attempts": 1, "users": 1, "ui_rules": 1}
    assert event == {"body": {"order": 7}, "raw": b'{"order": 7}', "headers": {"x": "1"}, "v": head_revision()}


def test_db_check_names_a_model_change_without_its_migration(tmp_path: Path) -> None:
    """A column the models have and the database lacks (a migration forgotten) fails the check."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    assert router(url, "db", "upgrade").returncode == 0

    async def drop_column() -> None:
        engine = db.create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("ALTER TABLE alert_states DROP COLUMN detail"))
        finally:
            await engine.dispose()

    asyncio.run(drop_column())
    result = router(url, "db", "check")
    assert result.returncode == 1
    assert "schema differs from the models" in result.stderr
    assert "detail" in result.stderr


def test_foreign_keys_are_on_again_after_a_sqlite_migration(tmp_path: Path) -> None:
    """Migrations turn SQLite's foreign keys off (a batch copy would cascade-delete); the connection they ran
    on goes back to the pool, so it must come back with them on, or deleting an event keeps its runs."""

    async def main() -> list[int]:
        engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'fk.db'}")
        try:
            await db.migrate(engine)
            async with engine.connect() as conn:
                return [int((await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one())]
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == [1]
