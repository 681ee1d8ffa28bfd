"""A worker that dies mid-run leaves a record; the next job resumes at the first step not done."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import select, update

from router.pipeline.ingest import Incoming, new_event_row
from router.pipeline.jobs import execute_run, process_event
from router.pipeline.store import insert_events
from router.records.models import Event, Run, RunStep
from router.settings import load_settings
from router.worker import close_state, create_state
from tests.conftest import write_rules


def rules(base: str) -> dict[str, str]:
    return {
        "r.yaml": f"""
        sources: [{{id: shop}}]
        rules:
          - id: chain
            source: shop
            steps:
              - id: fetch
                action: http
                with: {{method: GET, url: "{base}/orders/{{{{ body.order }}}}"}}
              - id: notify
                action: http
                with:
                  url: "{base}/notify"
                  json: {{order: "{{{{ steps.fetch.body.id }}}}", total: "{{{{ steps.fetch.body.total }}}}"}}
        """
    }


@pytest.fixture
async def worker_ctx(
    tmp_path: Path, httpserver: HTTPServer, database_url: str, redis_clean: str
) -> AsyncIterator[dict[str, Any]]:
    settings = load_settings(
        database_url=database_url,
        redis_url=redis_clean,
        egress_allow="127.0.0.0/8,::1",
        retry_schedule="",
        rules_dir=write_rules(tmp_path / "rules", rules(httpserver.url_for("").rstrip("/"))),
    )
    state = await create_state(settings)
    assert state.rules.errors == []
    yield {"state": state}
    await close_state(state)


async def store_event(ctx: dict[str, Any], body: dict[str, Any]) -> str:
    state = ctx["state"]
    row = new_event_row(None, Incoming("shop", "POST", "/hooks/shop", {}, {}, b"{}"), body)
    async with state.engine.begin() as conn:
        ((event_id, _),) = await insert_events(conn, [row])
    return str(event_id)


async def steps_of(ctx: dict[str, Any], event_id: str) -> dict[str, Any]:
    async with ctx["state"].engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    RunStep.step_id,
                    RunStep.status,
                    RunStep.attempts_count,
                    Run.status.label("run"),
                    Event.status.label("event"),
                )
                .join(Run, Run.id == RunStep.run_id)
                .join(Event, Event.id == Run.event_id)
                .where(Run.event_id == event_id)
            )
        ).all()
    return {r.step_id: (r.status, r.attempts_count, r.run, r.event) for r in rows}


async def test_resume_after_a_crash_skips_the_step_already_done(
    worker_ctx: dict[str, Any], httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/orders/o-1").respond_with_json({"id": "o-1", "total": 42})
    httpserver.expect_oneshot_request("/notify").respond_with_data("down", status=500)
    httpserver.expect_request("/notify").respond_with_data("ok")
    event_id = await store_event(worker_ctx, {"order": "o-1"})
    assert await process_event(worker_ctx, event_id) == 1
    assert (await steps_of(worker_ctx, event_id))["notify"][0] == "dead"  # 500, no retries left
    # Make it look as if the worker died while `notify` was in flight: step and run still running.
    async with worker_ctx["state"].engine.begin() as conn:
        await conn.execute(update(RunStep).where(RunStep.step_id == "notify").values(status="running"))
        await conn.execute(update(Run).values(status="running"))
        await conn.execute(update(Event).values(status="routed"))
    assert await process_event(worker_ctx, event_id) == 1  # the re-run job resumes, it does not re-route
    after = await steps_of(worker_ctx, event_id)
    fetches = [r for r, _ in httpserver.log if r.path.startswith("/orders/")]
    notifies = [r for r, _ in httpserver.log if r.path == "/notify"]
    assert len(fetches) == 1, "the step that had succeeded ran again"
    assert after == {
        "fetch": ("succeeded", 1, "succeeded", "succeeded"),
        "notify": ("succeeded", 2, "succeeded", "succeeded"),
    }
    assert notifies[-1].get_json() == {"order": "o-1", "total": 42}  # rendered from the stored output
    assert notifies[0].headers["Idempotency-Key"] == notifies[1].headers["Idempotency-Key"]


async def test_a_routed_event_is_never_routed_twice(worker_ctx: dict[str, Any], httpserver: HTTPServer) -> None:
    httpserver.expect_request("/orders/o-2").respond_with_json({"id": "o-2", "total": 1})
    httpserver.expect_request("/notify").respond_with_data("ok")
    event_id = await store_event(worker_ctx, {"order": "o-2"})
    assert await process_event(worker_ctx, event_id) == 1
    assert await process_event(worker_ctx, event_id) == 0
    async with worker_ctx["state"].engine.connect() as conn:
        runs = (await conn.execute(select(Run.id).where(Run.event_id == event_id))).all()
    assert len(runs) == 1
    assert len(httpserver.log) == 2


async def test_execute_run_resumes_one_run_found_by_the_sweep(
    worker_ctx: dict[str, Any], httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/orders/o-3").respond_with_json({"id": "o-3", "total": 9})
    httpserver.expect_request("/notify").respond_with_data("ok")
    event_id = await store_event(worker_ctx, {"order": "o-3"})
    await process_event(worker_ctx, event_id)
    async with worker_ctx["state"].engine.begin() as conn:
        run_id = await conn.scalar(select(Run.id).where(Run.event_id == event_id))
        await conn.execute(update(RunStep).where(RunStep.step_id == "notify").values(status="pending"))
        await conn.execute(update(Run).values(status="running"))
        await conn.execute(update(Event).values(status="routed"))
    assert await execute_run(worker_ctx, str(run_id)) == "succeeded"
    assert await execute_run(worker_ctx, str(run_id)) == "done"
    assert (await steps_of(worker_ctx, event_id))["notify"] == ("succeeded", 2, "succeeded", "succeeded")
    assert len([r for r, _ in httpserver.log if r.path.startswith("/orders/")]) == 1


async def test_a_long_run_hands_its_remaining_steps_to_a_new_job(
    tmp_path: Path, httpserver: HTTPServer, database_url: str, redis_clean: str
) -> None:
    def slow(_request: Any) -> Any:
        from werkzeug import Response

        time.sleep(3)
        return Response('{"id": "o-9", "total": 5}', content_type="application/json")

    httpserver.expect_request("/orders/o-9").respond_with_handler(slow)
    httpserver.expect_request("/notify").respond_with_data("ok")
    settings = load_settings(
        database_url=database_url,
        redis_url=redis_clean,
        egress_allow="127.0.0.0/8,::1",
        job_timeout=5,
        rules_dir=write_rules(tmp_path / "rules", rules(httpserver.url_for("").rstrip("/"))),
    )
    state = await create_state(settings)
    ctx: dict[str, Any] = {"state": state}
    try:
        event_id = await store_event(ctx, {"order": "o-9"})
        assert await process_event(ctx, event_id) == 1  # fetch takes 3 s > half the 5 s job: notify is handed on
        async with state.engine.connect() as conn:
            run_id, status, job_id = (await conn.execute(select(Run.id, Run.status, Run.job_id))).one()
        assert status == "pending"
        assert job_id.startswith(f"run:{run_id}:from:")
        assert (await steps_of(ctx, event_id))["notify"][0] == "pending"
        assert await execute_run(ctx, run_id) == "succeeded"
        assert (await steps_of(ctx, event_id))["notify"] == ("succeeded", 1, "succeeded", "succeeded")
    finally:
        await close_state(state)


async def test_sweep_settles_an_event_whose_runs_ended_before_a_crash(
    worker_ctx: dict[str, Any], httpserver: HTTPServer
) -> None:
    from datetime import UTC, datetime, timedelta

    from router.pipeline.jobs import sweep

    httpserver.expect_request("/orders/o-4").respond_with_json({"id": "o-4", "total": 1})
    httpserver.expect_request("/notify").respond_with_data("ok")
    event_id = await store_event(worker_ctx, {"order": "o-4"})
    await process_event(worker_ctx, event_id)
    async with worker_ctx["state"].engine.begin() as conn:  # killed after the run's commit, before the event's
        await conn.execute(update(Event).values(status="routed", routed_at=datetime.now(UTC) - timedelta(minutes=1)))
    assert await sweep(worker_ctx) == 1
    assert (await steps_of(worker_ctx, event_id))["notify"][3] == "succeeded"
    assert len(httpserver.log) == 2  # settling sends nothing again


async def test_a_step_timeout_is_capped_within_the_job(worker_ctx: dict[str, Any]) -> None:
    from router.actions.http import HttpConfig

    state = worker_ctx["state"]
    assert state.settings.job_timeout == 30
    long = HttpConfig.model_validate({"url": "https://x.test/", "timeout": 200})
    short = HttpConfig.model_validate({"url": "https://x.test/", "timeout": 10})
    assert state.deliverer._within_job(long).timeout == 24.0  # arq would otherwise kill the job mid-call
    assert state.deliverer._within_job(short) is short
