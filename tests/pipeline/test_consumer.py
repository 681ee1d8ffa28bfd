"""The batch pipeline: claims that never overlap, the ledger writer's group commits, the consumer's doorbell."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import func, insert, select

from router.pipeline import consumer as consumer_module
from router.pipeline import queue
from router.pipeline.claim import claim_batch
from router.pipeline.consumer import Consumer
from router.pipeline.ingest import Incoming, new_event_row
from router.pipeline.ledger import LedgerWriter
from router.pipeline.record import LEDGER_ORDER
from router.pipeline.store import insert_events
from router.records import db
from router.records.models import Attempt, Event, Run, RunStep, new_id, utcnow
from router.records.transactor import Transactor
from router.settings import load_settings
from router.worker import close_state, create_redis, create_state
from tests.conftest import write_rules

pytestmark = pytest.mark.postgres


def rules(url: str) -> dict[str, str]:
    step = {"id": "send", "action": "http", "with": {"url": url, "json": {"n": "{{ body.n }}"}}}
    rule = {"id": "all", "source": "shop", "steps": [step]}
    return {"r.yaml": json.dumps({"sources": [{"id": "shop"}], "rules": [rule]})}


def event_rows(count: int) -> list[dict[str, Any]]:
    rows = []
    for n in range(count):
        req = Incoming("shop", "POST", "/hooks/shop", {"content-type": "application/json"}, {}, b"{}")
        rows.append(new_event_row(None, req, {"n": n}))
    return rows


async def store(engine: Any, count: int) -> list[str]:
    rows = event_rows(count)
    async with engine.begin() as conn:
        stored = await insert_events(conn, rows)
    return [event_id for event_id, _ in stored]


async def test_claims_from_three_workers_never_overlap(tmp_path: Path, database_url: str) -> None:
    settings = load_settings(database_url=database_url, rules_dir=write_rules(tmp_path / "rules", rules("http://x/")))
    states = [await create_state(settings) for _ in range(3)]  # three engines: as three worker processes
    try:
        ids = await store(states[0].engine, 600)
        claimed: list[list[str]] = [[], [], []]

        async def claimer(n: int) -> None:
            state = states[n]
            while True:
                async with db.write_transaction(state.engine) as conn:
                    got = await conn.run_sync(claim_batch, state.rules.current, 40)
                claimed[n] += [p.event["id"] for p in got.plans]
                if got.events == 0:
                    return

        await asyncio.gather(*(claimer(n) for n in range(3)))
        async with states[0].engine.connect() as conn:
            statuses = dict((await conn.execute(select(Event.status, func.count()).group_by(Event.status))).all())
            runs = (await conn.execute(select(Run.event_id, func.count()).group_by(Run.event_id))).all()
    finally:
        for state in states:
            await close_state(state)
    everything = [event_id for part in claimed for event_id in part]
    overlap = len(everything) - len(set(everything))
    print(f"claims: 600 events, 3 claimers took {[len(p) for p in claimed]}, overlap {overlap}")
    assert sorted(everything) == sorted(ids)  # each event claimed exactly once
    assert statuses == {"routed": 600}
    assert len(runs) == 600
    assert {n for _, n in runs} == {1}


async def test_ledger_commits_units_together_and_fails_only_the_bad_one(tmp_path: Path, database_url: str) -> None:
    engine = db.create_engine(database_url)
    await db.migrate(engine)
    event_id = (await store(engine, 1))[0]
    async with engine.begin() as conn:
        run_id = new_id()
        await conn.execute(insert(Run).values(id=run_id, event_id=event_id, rule_id="r", status="running"))
        steps = [new_id() for _ in range(30)]
        await conn.execute(
            insert(RunStep),
            [
                {"id": s, "run_id": run_id, "position": i, "step_id": f"s{i}", "action": "http", "idempotency_key": s}
                for i, s in enumerate(steps)
            ],
        )
    writes = Transactor(engine, name="test")
    ledger = LedgerWriter(writes, LEDGER_ORDER).start()
    insert_attempt = LEDGER_ORDER[0]

    def unit(step_id: str) -> list[Any]:
        row = {
            "run_step_id": step_id,
            "number": 1,
            "started_at": utcnow(),
            "duration_ms": 1.0,
            "request": None,
            "response_status": 200,
            "response_body": "ok",
            "outcome": "succeeded",
            "error": None,
            "retryable": False,
        }
        return [(insert_attempt, row)]

    try:
        await asyncio.gather(*(ledger.write(unit(s)) for s in steps[:20]))
        together = (ledger.commits, ledger.units)
        results = await asyncio.gather(
            *(ledger.write(unit(s)) for s in steps[20:]), ledger.write(unit("no-such-step")), return_exceptions=True
        )
    finally:
        await ledger.stop()
        await writes.close()
    async with engine.connect() as conn:
        stored = await conn.scalar(select(func.count()).select_from(Attempt))
    await engine.dispose()
    print(f"ledger: 20 units in {together[0]} commit(s); a bad unit among 11 failed alone")
    assert together[1] == 20
    assert together[0] < 20  # units arriving together share commits
    assert results[:10] == [None] * 10
    assert isinstance(results[10], Exception)  # the unit whose step does not exist, and only it
    assert stored == 30


async def test_the_doorbell_wakes_a_consumer_at_once_and_the_database_is_the_queue(
    tmp_path: Path, httpserver: HTTPServer, redis_clean: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpserver.expect_request("/hook").respond_with_data("ok")
    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}",
        rules_dir=write_rules(tmp_path / "rules", rules(httpserver.url_for("/hook"))),
        redis_url=redis_clean,
        egress_allow="127.0.0.0/8",
    )
    monkeypatch.setattr(consumer_module, "POLL_SECONDS", 60.0)  # only the doorbell can wake it in time
    state = await create_state(settings)
    redis = create_redis(redis_clean)
    state.attach_redis(redis)
    state.writes = Transactor(state.engine, name="test")
    state.deliverer.ledger = LedgerWriter(state.writes, LEDGER_ORDER).start()
    consumer = state.consumer = Consumer(state, concurrency=10).start()
    try:
        await asyncio.sleep(0.3)  # the first look found nothing; now it waits for the doorbell
        first = await store(state.engine, 3)
        await queue.events_stored(state.redis, first)
        await _until_delivered(httpserver, 3, timeout=10)
        # Redis gone: the consumer still finds stored events by looking in the database
        monkeypatch.setattr(consumer_module, "POLL_SECONDS", 0.2)
        consumer.stop_claiming()
        await consumer.close()
        state.attach_redis(None)
        consumer = state.consumer = Consumer(state, concurrency=10).start()
        await store(state.engine, 2)
        await _until_delivered(httpserver, 5, timeout=10)
    finally:
        await consumer.close()
        state.consumer = None
        await state.deliverer.ledger.stop()
        await close_state(state)
        await redis.aclose(close_connection_pool=True)
    bodies = sorted(json.loads(request.data)["n"] for request, _ in httpserver.log)
    assert bodies == [0, 0, 1, 1, 2]


async def _until_delivered(httpserver: HTTPServer, count: int, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while len(httpserver.log) < count:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{len(httpserver.log)} of {count} delivered after {timeout} s")
        await asyncio.sleep(0.02)
