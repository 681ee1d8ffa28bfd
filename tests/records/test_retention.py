"""Retention: old events go with their runs, steps and attempts, in batches; live work never goes; per-source
overrides and caps; the workers prune on their own; `router db prune`; /health shows what is kept."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from router.records import db, retention
from router.records.eventlog import id_floor
from router.records.models import Attempt, Event, InboxRequest, Run, RunStep
from router.rules.ruleset import load_ruleset
from tests.conftest import REPO, RouterFactory, eventually, write_rules

NOW = datetime.now(UTC)


def old_id(when: datetime) -> str:
    return id_floor(when)[:10] + "".join(secrets.choice("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for _ in range(16))


async def seed(
    engine: Any, source: str, when: datetime, status: str = "succeeded", run: str | None = "succeeded"
) -> str:
    """One event as the worker leaves it: with a run, a step and an attempt (``run`` None: no run)."""
    event_id = old_id(when)
    async with engine.begin() as conn:
        await conn.execute(
            insert(Event).values(
                id=event_id,
                source=source,
                received_at=when,
                method="POST",
                path=f"/hooks/{source}",
                headers={},
                query={},
                content_type="application/json",
                body={"n": 1},
                raw_body=b'{"n": 1}',
                status=status,
                matched=1 if run else 0,
                chain_depth=0,
            )
        )
        if run is not None:
            run_id, step_id = old_id(when), old_id(when)
            await conn.execute(
                insert(Run).values(id=run_id, event_id=event_id, rule_id="r", status=run, created_at=when)
            )
            await conn.execute(
                insert(RunStep).values(
                    id=step_id,
                    run_id=run_id,
                    position=0,
                    step_id="s",
                    action="http",
                    status=run,
                    idempotency_key=f"{event_id}:r:s",
                    attempts_count=1,
                )
            )
            await conn.execute(
                insert(Attempt).values(
                    run_step_id=step_id, number=1, started_at=when, duration_ms=1.0, outcome="succeeded"
                )
            )
    return event_id


async def counts(engine: Any) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            model.__tablename__: int(await conn.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Event, Run, RunStep, Attempt, InboxRequest)
        }


async def ids(engine: Any) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.scalars(select(Event.id))).all())


@pytest.mark.postgres
async def test_old_events_go_with_their_runs_and_live_work_stays(database_url: str) -> None:
    engine = db.create_engine(database_url)
    await db.migrate(engine)
    try:
        old = NOW - timedelta(days=10)
        done = await seed(engine, "shop", old)
        dead = await seed(engine, "shop", old, status="failed", run="dead")
        unmatched = await seed(engine, "shop", old, status="unmatched", run=None)
        unrouted = await seed(engine, "shop", old, status="received", run=None)  # never routed yet
        retrying = await seed(engine, "shop", old, status="routed", run="retrying")
        held = await seed(engine, "shop", old, status="failed", run="held")  # a run waits on a paused destination
        fresh = await seed(engine, "shop", NOW - timedelta(days=1))
        async with engine.begin() as conn:
            await conn.execute(
                insert(InboxRequest).values(
                    id=old_id(old),
                    name="x",
                    received_at=old,
                    method="POST",
                    path="/inbox/x",
                    headers={},
                    query={},
                    body_text="",
                )
            )
        report = await retention.prune(engine, retention.Policy(days=7), {}, max_batch=2)
        kept = await ids(engine)
        left = await counts(engine)
    finally:
        await engine.dispose()
    assert kept == {unrouted, retrying, held, fresh}
    assert not {done, dead, unmatched} & kept
    assert report.events == 3
    assert report.inbox == 1
    assert report.batches >= 2  # batches of at most 2
    assert left == {"events": 4, "runs": 3, "run_steps": 3, "attempts": 3, "inbox_requests": 0}  # cascaded


@pytest.mark.postgres
async def test_a_source_override_and_a_cap_per_source(database_url: str, tmp_path: Path) -> None:
    folder = write_rules(
        tmp_path / "rules",
        {
            "r.yaml": """
            sources:
              - {id: chatty, retention: {max_events: 2}}
              - {id: audit, retention: {days: 0}}
              - {id: plain}
            """
        },
    )
    sources = load_ruleset(folder, env={}).sources
    assert retention.policies(retention.Policy(days=3), sources) == {
        "chatty": retention.Policy(days=3, max_events=2),
        "audit": retention.Policy(days=0, max_events=0),
    }
    engine = db.create_engine(database_url)
    await db.migrate(engine)
    try:
        chatty = [await seed(engine, "chatty", NOW - timedelta(hours=5 - n)) for n in range(5)]
        audit = [await seed(engine, "audit", NOW - timedelta(days=400))]
        plain = [await seed(engine, "plain", NOW - timedelta(days=d)) for d in (5, 1)]
        gone = [await seed(engine, "removed-source", NOW - timedelta(days=5))]  # its source is no longer defined
        report = await retention.prune(engine, retention.Policy(days=3), sources)
        kept = await ids(engine)
    finally:
        await engine.dispose()
    assert kept == {*chatty[-2:], *audit, plain[1]}
    assert report.by_source == {"chatty": 3, "plain": 1, "removed-source": 1}
    assert not set(gone) & kept


async def test_workers_prune_on_schedule_and_health_shows_what_is_kept(router_factory: RouterFactory) -> None:
    files = {"r.yaml": "sources:\n  - {id: shop}\n"}
    async with router_factory(files, retention_days=2, retention_interval=1) as r:
        engine = db.create_engine(r.settings.database_url)
        try:
            old = await seed(engine, "shop", NOW - timedelta(days=30))
            await seed(engine, "shop", NOW - timedelta(days=3))
            kept = (await r.hook("shop", {"n": 1})).json()["event_id"]

            async def pruned() -> bool:
                return await ids(engine) == {kept}

            await eventually(pruned, timeout=15, what="the worker's scheduled prune")
        finally:
            await engine.dispose()
        storage = (await r.client.get("/health")).json()["storage"]
    assert storage["oldest_event_id"] == kept
    assert old != kept


def test_db_prune_command(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    folder = write_rules(tmp_path / "rules", {"r.yaml": "sources:\n  - {id: shop}\n"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
    env |= {"ROUTER_DATABASE_URL": url, "ROUTER_RULES_DIR": str(folder), "PYTHONPATH": str(REPO)}

    def router(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "router", *args], env=env | extra, capture_output=True, text=True, timeout=60
        )

    assert router("db", "upgrade").returncode == 0

    async def fill() -> None:
        engine = db.create_engine(url)
        try:
            for days in (40, 20, 1):
                await seed(engine, "shop", NOW - timedelta(days=days))
        finally:
            await engine.dispose()

    import asyncio

    asyncio.run(fill())
    nothing = router("db", "prune")
    assert nothing.returncode == 1
    assert "set ROUTER_RETENTION_DAYS" in nothing.stderr
    done = router("db", "prune", ROUTER_RETENTION_DAYS="10")
    assert done.returncode == 0, done.stderr
    assert '"events": 2' in done.stdout
    assert '"by_source": {"shop": 2}' in done.stdout
