"""SIGTERM to a worker: running work finishes within the grace period, or goes back and resumes elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer
from redis.asyncio import Redis
from werkzeug import Request, Response

from tests.conftest import RouterFactory, admin_token_for, free_port, write_rules
from tests.helpers import eventually
from tests.ops.test_processes import base_env, running


def slow(seconds: float, seen: list[dict[str, str]]) -> Any:
    def handler(request: Request) -> Response:
        seen.append(dict(request.headers))
        time.sleep(seconds)
        return Response("ok")

    return handler


def rules(url: str) -> dict[str, str]:
    step = {"id": "call", "action": "http", "with": {"url": url, "timeout": 10}}
    return {
        "r.yaml": json.dumps({"sources": [{"id": "shop"}], "rules": [{"id": "r", "source": "shop", "steps": [step]}]})
    }


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


@pytest.mark.parametrize(("grace", "sink_delay"), [(10, 1.5), (1, 4.0)], ids=["finishes", "hands-back"])
def test_sigterm_finishes_or_hands_back_in_flight_work(
    tmp_path: Path, httpserver: HTTPServer, redis_clean: str, grace: int, sink_delay: float
) -> None:
    seen: list[dict[str, str]] = []
    httpserver.expect_request("/slow").respond_with_handler(slow(sink_delay, seen))
    write_rules(tmp_path / "rules", rules(httpserver.url_for("/slow")))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = base_env(
        tmp_path,
        ROUTER_REDIS_URL=redis_clean,
        ROUTER_RULES_DIR=str(tmp_path / "rules"),
        ROUTER_EGRESS_ALLOW="127.0.0.0/8,::1",
        ROUTER_SHUTDOWN_GRACE=str(grace),
        ROUTER_SWEEP_INTERVAL="2",
    )
    headers = {"authorization": f"Bearer {admin_token_for(env['ROUTER_DATABASE_URL'])}"}
    with running(["serve", "--port", str(port)], env, tmp_path, ready_url=f"{url}/health"):
        with running(["worker"], env, tmp_path) as worker:
            event_id = httpx.post(f"{url}/hooks/shop", json={"n": 1}).json()["event_id"]
            wait_for(lambda: seen, 15, "the sink to receive the call")
            started = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
            stopped_after = time.monotonic() - started
        status = httpx.get(f"{url}/api/events/{event_id}", headers=headers).json()["status"]
        if grace > sink_delay:
            assert status == "succeeded", "the worker left before its running job finished"
            assert len(seen) == 1
            print(f"shutdown: SIGTERM mid-delivery, job finished, worker stopped after {stopped_after:.1f} s")
            return
        assert status == "routed", "a cancelled job must not be recorded as done"
        assert stopped_after < grace + 3
        with running(["worker"], env, tmp_path):  # another worker takes the handed-back job
            wait_for(
                lambda: httpx.get(f"{url}/api/events/{event_id}", headers=headers).json()["status"] == "succeeded",
                40,
                "the handed-back run to resume",
            )
        event = httpx.get(f"{url}/api/events/{event_id}", headers=headers).json()
    (run,) = event["runs"]
    assert run["status"] == "succeeded"
    assert len(seen) == 2
    assert seen[0]["Idempotency-Key"] == seen[1]["Idempotency-Key"]
    print(f"shutdown: cancelled after {grace} s grace, resumed by the next worker with the same idempotency key")


async def test_a_job_cancelled_by_the_stop_does_not_cut_the_workers_close_short(router_factory: RouterFactory) -> None:
    """arq's close() gathers its jobs without return_exceptions: a job cancelled between two of arq's own
    awaits re-raised there and skipped the rest (our shutdown hook, the health key, closing the Redis pool)."""
    from router.worker import build_worker

    async with router_factory(rules("http://127.0.0.1:9/never"), worker=False) as r:
        worker = build_worker(r.settings, handle_signals=False)
        task = asyncio.create_task(worker.async_run())

        async def started() -> bool:
            return "ops" in worker.ctx and await worker.pool.exists(worker.health_check_key) == 1

        await eventually(started, what="the worker to start")
        state, ops, pool = worker.ctx["state"], worker.ctx["ops"], worker.pool.connection_pool
        stuck = asyncio.create_task(asyncio.sleep(30))  # a job the stop cancels outside arq's own try
        worker.tasks["stuck"] = stuck
        await worker.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert stuck.cancelled()
        assert state.consumer is None, "the worker's shutdown hook did not run"
        assert all(t.done() for t in ops.tasks), "heartbeat, metrics and alert tasks left running"
        assert worker._pool is None
        connections = [*pool._available_connections, *pool._in_use_connections]
        assert connections, "the worker never used its pool"
        assert not any(c.is_connected for c in connections), "Redis connections left open"
        redis = Redis.from_url(r.settings.redis_url)
        try:
            assert await redis.exists(worker.health_check_key) == 0
        finally:
            await redis.aclose()
