"""Retries on real Redis and SQL: schedules, Retry-After, dead letters, replay, retry and the reconciler."""

from __future__ import annotations

import itertools
import json
import random
import time
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from router.errors import SettingsError
from router.pipeline.retry import RetryPolicy, RetrySpec, compile_policy, parse_duration
from router.settings import load_settings
from tests.conftest import Router, RouterFactory

FAST = {"retry_schedule": "0.2s,0.2s,0.2s", "retry_jitter": 0.0}


def rules(url: str, retry: dict[str, Any] | None = None, action: str = "http") -> dict[str, str]:
    step: dict[str, Any] = {"id": "call", "action": action, "with": {"url": url, "json": {"n": "{{ body.n }}"}}}
    if action == "slack":
        step["with"] = {"url": url, "text": "n={{ body.n }}"}
    if retry is not None:
        step["retry"] = retry
    return {
        "r.yaml": json.dumps({"sources": [{"id": "shop"}], "rules": [{"id": "r", "source": "shop", "steps": [step]}]})
    }


async def send(r: Router, n: int = 1) -> str:
    response = await r.hook("shop", {"n": n})
    assert response.status_code == 202
    return str(response.json()["event_id"])


async def test_passing_failures_are_retried_on_schedule_then_succeed(
    router_factory: RouterFactory, httpserver: HTTPServer, database_url: str
) -> None:
    stamps: list[float] = []

    def handler(status: int) -> Any:
        def respond(_request: Any) -> Response:
            stamps.append(time.monotonic())
            return Response("busy" if status >= 500 else "ok", status=status)

        return respond

    httpserver.expect_oneshot_request("/x").respond_with_handler(handler(500))
    httpserver.expect_oneshot_request("/x").respond_with_handler(handler(503))
    httpserver.expect_request("/x").respond_with_handler(handler(200))
    async with router_factory(rules(httpserver.url_for("/x")), database_url=database_url, **FAST) as r:
        event = await r.wait_event(await send(r))
    (run,) = event["runs"]
    (step,) = run["steps"]
    assert (event["status"], run["status"], step["status"]) == ("succeeded", "succeeded", "succeeded")
    assert [a["outcome"] for a in step["attempts"]] == ["failed", "failed", "succeeded"]
    assert [a["response_status"] for a in step["attempts"]] == [500, 503, 200]
    keys = {req.headers["Idempotency-Key"] for req, _ in httpserver.log}
    assert keys == {step["idempotency_key"]}
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(0.19 <= g < 1.5 for g in gaps), gaps
    print(f"retry schedule: gaps {[round(g, 3) for g in gaps]} s for a 0.2 s schedule")


async def test_exhausted_retries_make_a_dead_letter_with_every_attempt(
    router_factory: RouterFactory, httpserver: HTTPServer, database_url: str
) -> None:
    httpserver.expect_request("/x").respond_with_data("down", status=500)
    retry = {"max_attempts": 3, "schedule": ["0.1s"], "jitter": 0}
    async with router_factory(rules(httpserver.url_for("/x"), retry), database_url=database_url) as r:
        event = await r.wait_event(await send(r))
        letters = (await r.client.get("/api/dead-letters")).json()["dead_letters"]
        only_dead = (await r.client.get("/api/dead-letters", params={"status": "dead", "rule": "r"})).json()
        other_rule = (await r.client.get("/api/dead-letters", params={"rule": "nope"})).json()
        later = (await r.client.get("/api/dead-letters", params={"since": "2999-01-01T00:00:00Z"})).json()
    (run,) = event["runs"]
    assert (event["status"], run["status"]) == ("failed", "dead")
    assert run["error"].endswith("answered 500 (gave up after 3 attempts)")
    assert len(httpserver.log) == 3
    (letter,) = letters
    assert letter["run_id"] == run["id"]
    assert (letter["status"], letter["source"], letter["rule_id"]) == ("dead", "shop", "r")
    assert [a["number"] for a in letter["attempts"]] == [1, 2, 3]
    assert all("answered 500" in a["error"] for a in letter["attempts"])
    assert only_dead["dead_letters"][0]["run_id"] == run["id"]
    assert other_rule["dead_letters"] == []
    assert later["dead_letters"] == []


async def test_retry_after_is_honoured(router_factory: RouterFactory, httpserver: HTTPServer) -> None:
    stamps: list[float] = []

    def limited(_request: Any) -> Response:
        stamps.append(time.monotonic())
        return Response("slow down", status=429, headers={"Retry-After": "1"})

    def ok(_request: Any) -> Response:
        stamps.append(time.monotonic())
        return Response("ok")

    httpserver.expect_oneshot_request("/x").respond_with_handler(limited)
    httpserver.expect_request("/x").respond_with_handler(ok)
    async with router_factory(rules(httpserver.url_for("/x")), **FAST) as r:
        event = await r.wait_event(await send(r))
    assert event["status"] == "succeeded"
    assert stamps[1] - stamps[0] >= 1.0, "Retry-After: 1 was not waited for"


# A 410 pauses its destination instead: see tests/pipeline/test_destinations.py.
@pytest.mark.parametrize(("status", "headers"), [(404, None), (301, {"Location": "http://x.test/"})])
async def test_permanent_failures_are_not_retried(
    router_factory: RouterFactory, httpserver: HTTPServer, status: int, headers: dict[str, str] | None
) -> None:
    httpserver.expect_request("/x").respond_with_data("no", status=status, headers=headers)
    async with router_factory(rules(httpserver.url_for("/x")), **FAST) as r:
        event = await r.wait_event(await send(r))
    (run,) = event["runs"]
    assert (event["status"], run["status"]) == ("failed", "failed")
    assert len(httpserver.log) == 1


async def test_retry_from_the_failed_step_and_replay_with_the_ledger(
    router_factory: RouterFactory, httpserver: HTTPServer, database_url: str
) -> None:
    httpserver.expect_oneshot_request("/a").respond_with_json({"id": 7})
    httpserver.expect_oneshot_request("/b").respond_with_data("down", status=500)
    httpserver.expect_request("/b").respond_with_data("ok")
    files = {
        "r.yaml": json.dumps(
            {
                "sources": [{"id": "shop"}],
                "rules": [
                    {
                        "id": "r",
                        "source": "shop",
                        "steps": [
                            {"id": "a", "action": "http", "with": {"url": httpserver.url_for("/a")}},
                            {
                                "id": "b",
                                "action": "http",
                                "with": {"url": httpserver.url_for("/b"), "json": {"a": "{{ steps.a.body.id }}"}},
                            },
                        ],
                    }
                ],
            }
        )
    }
    async with router_factory(files, database_url=database_url) as r:
        event_id = await send(r)
        failed = await r.wait_event(event_id)
        (run,) = failed["runs"]
        assert run["status"] == "dead"
        wrong = await r.client.post("/api/runs/NOPE/retry", json={})
        retried = await r.client.post(f"/api/runs/{run['id']}/retry", json={"from": "failed_step"})
        assert retried.status_code == 202, retried.text
        done = await r.wait_event(event_id)
        again = await r.client.post(f"/api/runs/{run['id']}/retry", json={})
        replayed = await r.client.post(f"/api/events/{event_id}/replay", json={})
        assert replayed.status_code == 202
        after_replay = await r.wait_event(event_id)
    assert wrong.status_code == 404
    assert done["status"] == "succeeded"
    (resumed,) = done["runs"]
    assert resumed["id"] == run["id"]
    assert [s["status"] for s in resumed["steps"]] == ["succeeded", "succeeded"]
    assert [req.path for req, _ in httpserver.log] == ["/a", "/b", "/b"]  # /a was not called again
    assert httpserver.log[-1][0].get_json() == {"a": 7}  # from the stored output of step a
    assert again.status_code == 409
    assert replayed.json()["skipped_sends"] == 2  # both steps are in the ledger: nothing is sent again
    replay_run = after_replay["runs"][-1]
    assert [s["status"] for s in replay_run["steps"]] == ["skipped", "skipped"]
    assert replay_run["steps"][0]["output"]["body"] == {"id": 7}
    assert len(httpserver.log) == 3


async def test_bulk_retry_needs_a_count_and_a_confirmation(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    httpserver.expect_ordered_request("/x").respond_with_data("down", status=500)
    httpserver.expect_ordered_request("/x").respond_with_data("down", status=500)
    httpserver.expect_request("/x").respond_with_data("ok")
    async with router_factory(rules(httpserver.url_for("/x"))) as r:
        ids = [await send(r, n) for n in (1, 2)]
        for event_id in ids:
            assert (await r.wait_event(event_id))["status"] == "failed"
        preview = (await r.client.post("/api/runs/retry", json={"rule": "r"})).json()
        refused = await r.client.post("/api/runs/retry", json={"rule": "r", "confirm": "0" * 16})
        start_preview = (await r.client.post("/api/runs/retry", json={"rule": "r", "from": "start"})).json()
        confirmed = await r.client.post("/api/runs/retry", json={"rule": "r", "confirm": preview["confirm"]})
        events = [await r.wait_event(event_id) for event_id in ids]
    assert (preview["runs"], preview["events"], preview["done"]) == (2, 2, False)
    assert refused.status_code == 409
    assert start_preview["would_repeat_sends"] == 0
    assert confirmed.status_code == 202
    assert confirmed.json()["retried"] == 2
    assert [e["status"] for e in events] == ["succeeded", "succeeded"]


async def test_reconciler_re_enqueues_a_due_retry_lost_with_redis(
    router_factory: RouterFactory, httpserver: HTTPServer, redis_clean: str
) -> None:
    import redis.asyncio as aioredis

    httpserver.expect_oneshot_request("/x").respond_with_data("down", status=500)
    httpserver.expect_request("/x").respond_with_data("ok")
    async with router_factory(
        rules(httpserver.url_for("/x")), retry_schedule="1s", retry_jitter=0, sweep_interval=1
    ) as r:
        event_id = await send(r)
        await r.wait_event(event_id, timeout=5, done=("routed",))
        deadline = time.monotonic() + 5
        while (await r.event(event_id))["runs"][0]["status"] != "retrying" and time.monotonic() < deadline:
            pass
        client = aioredis.Redis.from_url(redis_clean)
        await client.flushdb()  # Redis restarted empty: the deferred retry job is gone
        await client.aclose()
        event = await r.wait_event(event_id, timeout=15)
    assert event["status"] == "succeeded"
    assert len(httpserver.log) == 2


def test_durations_and_policies() -> None:
    assert [parse_duration(v) for v in (3, 1.5, "5s", "10m", "2h", "1d", "250ms")] == [
        3.0,
        1.5,
        5.0,
        600.0,
        7200.0,
        86400.0,
        0.25,
    ]
    for bad in ("soon", "-1s", "8d", True):
        with pytest.raises(ValueError, match=r"duration|out of range"):
            parse_duration(bad)
    default = load_settings().retry_policy()
    assert default.max_attempts == 8
    assert default.delays == (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    expo = compile_policy(RetrySpec(backoff="exponential", initial="1s", max="5s", max_attempts=6), default)
    assert expo.delays == (1.0, 2.0, 4.0, 5.0, 5.0)
    fixed = compile_policy(RetrySpec(backoff="fixed", initial="2s", max_attempts=3), default)
    assert fixed.delays == (2.0, 2.0)
    rule_level = compile_policy(RetrySpec(max_attempts=3), default)
    assert rule_level.delays == (5.0, 300.0)
    assert compile_policy(None, default, rule_level) is rule_level
    stretched = compile_policy(RetrySpec(schedule=["1s"], max_attempts=4), default)
    assert stretched.delays == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="not both"):
        RetrySpec(schedule=["1s"], backoff="fixed")


def test_jitter_spreads_delays_within_bounds() -> None:
    policy = RetryPolicy((10.0,), jitter=0.2)
    rng = random.Random(7)
    delays = [policy.delay_before(2, rng=rng) for _ in range(200)]
    assert min(delays) >= 8.0
    assert max(delays) <= 12.0
    mean = sum(delays) / len(delays)
    spread = (sum((d - mean) ** 2 for d in delays) / len(delays)) ** 0.5 / mean
    assert spread > 0.05, "jitter does not spread the delays"
    assert policy.delay_before(2, retry_after=60.0, rng=rng) == 60.0
    print(f"jitter: 200 delays of 10 s ±20 %: min {min(delays):.2f} max {max(delays):.2f} cv {spread:.3f}")


def test_bad_retry_schedule_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_RETRY_SCHEDULE", "5s,soon")
    with pytest.raises(SettingsError, match=r"ROUTER_RETRY_SCHEDULE='5s,soon'.*accepted: comma-separated durations"):
        load_settings()
