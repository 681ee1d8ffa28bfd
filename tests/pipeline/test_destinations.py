"""Unhealthy destinations: the circuit breaker, and pausing on 410 Gone until resumed."""

from __future__ import annotations

import json
import time
from typing import Any

from pytest_httpserver import HTTPServer

from router.pipeline.destinations import COOL_DOWN, Breaker, destination_of
from tests.conftest import Router, RouterFactory, eventually


def rules(bad: str, good: str) -> dict[str, str]:
    def rule(rule_id: str, source: str, url: str) -> dict[str, Any]:
        return {"id": rule_id, "source": source, "steps": [{"id": "call", "action": "http", "with": {"url": url}}]}

    return {
        "r.yaml": json.dumps(
            {
                "sources": [{"id": "bad"}, {"id": "good"}],
                "rules": [rule("to-bad", "bad", bad), rule("to-good", "good", good)],
            }
        )
    }


async def send(r: Router, source: str, n: int) -> str:
    response = await r.hook(source, {"n": n})
    assert response.status_code == 202
    return str(response.json()["event_id"])


async def held(r: Router, event_id: str) -> None:
    async def check() -> bool:
        runs = (await r.event(event_id))["runs"]
        return bool(runs) and runs[0]["status"] == "held"

    await eventually(check, what=f"event {event_id} to be held")


def test_breaker_trips_probes_and_closes() -> None:
    b = Breaker()
    now = 1000.0
    for i in range(9):
        assert b.record(i % 2 == 0, now + i * 0.1) is False  # fewer than 10 calls never trip
    assert b.record(False, now + 1) is False  # 5 failures in 10 calls: 50 % trips only at a failure
    assert b.record(True, now + 1.1) is True
    assert b.state == "open"
    wait = b.allow(now + 2)
    assert wait is not None
    assert abs(wait - (COOL_DOWN - 0.9)) < 0.01
    assert b.allow(now + 1.1 + COOL_DOWN) is None  # half-open: one probe goes
    assert b.allow(now + 1.2 + COOL_DOWN) is not None  # and only one
    assert b.record(True, now + 1.3 + COOL_DOWN) is True  # the probe failed: open again, twice as long
    assert b.cool_down == 2 * COOL_DOWN
    assert b.allow(now + 1.4 + 3 * COOL_DOWN) is None
    assert b.record(False, now + 1.5 + 3 * COOL_DOWN) is False
    assert (b.state, b.cool_down) == ("closed", COOL_DOWN)


def test_healthy_mix_never_trips() -> None:
    b = Breaker()
    for i in range(100):
        assert b.record(i % 3 == 0, 1000.0 + i * 0.1) is False  # a third failing stays closed
    assert b.state == "closed"


def test_destination_keys() -> None:
    class Cfg:
        url = "https://API.example.com/v1/orders?x=1"

    assert destination_of("http", Cfg(), "mail:25", "https://slack.com/api") == "https://api.example.com:443"
    assert destination_of("slack", object(), "mail:25", "https://slack.com/api") == "https://slack.com:443"
    assert destination_of("email", object(), "mail:25", "x") == "smtp://mail:25"
    assert destination_of("emit", object(), "mail:25", "x") is None


async def test_a_dead_destination_stops_taking_slots_while_a_healthy_one_flows(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/bad").respond_with_data("down", status=503)
    httpserver.expect_request("/good").respond_with_data("ok")
    bad = httpserver.url_for("/bad").replace("localhost", "127.0.0.1")
    good = httpserver.url_for("/good")  # `localhost`: another destination key for the same test server
    async with router_factory(rules(bad, good), retry_schedule="0.05s,0.05s,0.05s,0.05s,0.05s", retry_jitter=0) as r:
        bad_ids = [await send(r, "bad", n) for n in range(20)]
        good_ids = [await send(r, "good", n) for n in range(20)]
        good_events = [await r.wait_event(e) for e in good_ids]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            listing = (await r.client.get("/api/destinations")).json()["destinations"]
            tripped = [d for d in listing if d.get("breaker", {}).get("state") == "open"]
            if tripped:
                break
        bad_calls = sum(1 for req, _ in httpserver.log if req.path == "/bad")
        waiting = [await r.event(e) for e in bad_ids]
    assert [e["status"] for e in good_events] == ["succeeded"] * 20
    assert tripped, "the failing destination's breaker did not open"
    assert tripped[0]["destination"].startswith("http://127.0.0.1:")
    # Without a breaker 20 events x 6 attempts would have made 120 calls.
    assert bad_calls < 60, bad_calls
    notes = [s["note"] for e in waiting for run in e["runs"] for s in run["steps"] if s["note"]]
    assert any("circuit open" in n for n in notes)
    print(f"breaker: 20 events to a dead destination made {bad_calls} calls (120 without it); 20 healthy delivered")


async def test_410_pauses_the_destination_until_resumed(
    router_factory: RouterFactory, httpserver: HTTPServer, database_url: str
) -> None:
    httpserver.expect_oneshot_request("/bad").respond_with_data("gone", status=410)
    httpserver.expect_request("/bad").respond_with_data("ok")
    bad = httpserver.url_for("/bad")
    async with router_factory(rules(bad, bad), database_url=database_url) as r:
        first = await send(r, "bad", 1)
        await held(r, first)
        second = await send(r, "good", 2)  # same destination, other rule: held without a call
        await held(r, second)
        listing = (await r.client.get("/api/destinations")).json()["destinations"]
        calls_while_paused = len(httpserver.log)
        paused_event = await r.event(second)
        resumed = await r.client.post("/api/destinations/resume", json={"destination": listing[0]["destination"]})
        again = await r.client.post("/api/destinations/resume", json={"destination": listing[0]["destination"]})
        events = [await r.wait_event(e) for e in (first, second)]
    assert listing[0]["paused"] is True
    assert "410 Gone" in listing[0]["reason"]
    assert calls_while_paused == 1
    assert paused_event["runs"][0]["steps"][0]["attempts"] == []
    assert "is paused" in paused_event["runs"][0]["steps"][0]["note"]
    assert resumed.json() == {"destination": listing[0]["destination"], "resumed": True, "runs": 2}
    assert again.status_code == 404
    assert [e["status"] for e in events] == ["succeeded", "succeeded"]
    assert len(httpserver.log) == 3


def limited_rules(url: str, limits: dict[str, Any]) -> dict[str, str]:
    step = {"id": "call", "action": "http", "with": {"url": url}, "limits": limits}
    return {
        "r.yaml": json.dumps({"sources": [{"id": "shop"}], "rules": [{"id": "r", "source": "shop", "steps": [step]}]})
    }


async def test_rate_limit_spaces_calls_across_the_destination(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    stamps: list[float] = []

    def record(_request: Any) -> Any:
        from werkzeug import Response

        stamps.append(time.monotonic())
        return Response("ok")

    httpserver.expect_request("/x").respond_with_handler(record)
    async with router_factory(limited_rules(httpserver.url_for("/x"), {"rate": "5/s"})) as r:
        ids = [(await r.hook("shop", {"n": n})).json()["event_id"] for n in range(12)]
        events = [await r.wait_event(e, timeout=20) for e in ids]
    assert [e["status"] for e in events] == ["succeeded"] * 12
    stamps.sort()
    busiest = max(sum(1 for t in stamps if s <= t < s + 1.0) for s in stamps)
    span = stamps[-1] - stamps[0]
    assert busiest <= 6, f"{busiest} calls within one second under a 5/s limit"
    assert span >= 11 / 5 - 0.3, span
    print(f"rate limit 5/s: 12 calls over {span:.2f} s, at most {busiest} in any second")


async def test_concurrency_limit_caps_calls_in_flight(router_factory: RouterFactory) -> None:
    import threading

    from pytest_httpserver import HTTPServer as Server
    from werkzeug import Response

    lock = threading.Lock()
    now = {"in_flight": 0, "peak": 0}

    def slow(_request: Any) -> Response:
        with lock:
            now["in_flight"] += 1
            now["peak"] = max(now["peak"], now["in_flight"])
        time.sleep(0.3)
        with lock:
            now["in_flight"] -= 1
        return Response("ok")

    server = Server(threaded=True)
    server.start()
    try:
        server.expect_request("/x").respond_with_handler(slow)
        async with router_factory(limited_rules(server.url_for("/x"), {"concurrency": 2})) as r:
            ids = [(await r.hook("shop", {"n": n})).json()["event_id"] for n in range(8)]
            events = [await r.wait_event(e, timeout=30) for e in ids]
    finally:
        server.clear()
        server.stop()
    assert [e["status"] for e in events] == ["succeeded"] * 8
    assert now["peak"] == 2, f"peak in flight {now['peak']} under a concurrency limit of 2"
    print(f"concurrency limit 2: 8 slow calls, peak in flight {now['peak']}")
