"""Alerts fire and resolve, once each, for every kind, delivered through the real actions to a loopback sink.

The evaluator takes ``now``: the tests move the clock forward instead of waiting. The app under test runs
its own worker (which routes and delivers the alerts' events); its periodic alert round is kept out of the
way by claiming the round's Redis slots before it starts, so only the test evaluates.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from router.errors import RuleSetError
from router.metrics import sample
from router.ops import alerts
from router.pipeline.destinations import url_destination
from router.records import db
from router.rules.compiled import RuleSet
from router.rules.ruleset import load_ruleset
from router.worker import create_redis
from tests.conftest import Router, RouterFactory, eventually, sign_in, write_rules

pytestmark = pytest.mark.timeout(90)
INTERVAL = 3600.0


class Sink:
    """The notifications the alerts' http steps deliver, and a destination the rules' steps call."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.notified: list[dict[str, Any]] = []
        self.down = True
        self.alert_failures = 0  # the alert endpoint answers 503 this many times first
        server.expect_request("/alert").respond_with_handler(self._alert)
        server.expect_request("/dest").respond_with_handler(self._dest)
        server.expect_request("/gone").respond_with_data("bad request", status=400)

    def _alert(self, request: Request) -> Response:
        if self.alert_failures:
            self.alert_failures -= 1
            return Response("try later", 503)
        self.notified.append(request.get_json())
        return Response("ok")

    def _dest(self, _request: Request) -> Response:
        return Response("down", 503) if self.down else Response("ok")

    def url(self, path: str) -> str:
        return self.server.url_for(path)

    async def wait(self, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 20
        while len(self.notified) < count:
            assert time.monotonic() < deadline, f"{len(self.notified)} notification(s), expected {count}"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # and no more than that
        return list(self.notified)


def files(sink: Sink, alert: dict[str, Any], *, source_extra: str = "", rule_url: str = "/dest") -> dict[str, str]:
    # another host name than the rules' destination: an open breaker there must not hold the alert
    notify = [{"id": "ops", "action": "http", "with": {"url": sink.url("/alert").replace("localhost", "127.0.0.1")}}]
    return {
        "shop.yaml": f"""
        sources:
          - id: shop
            verify: {{scheme: none}}
            {source_extra}
        rules:
          - id: forward
            source: shop
            steps:
              - {{id: call, action: http, with: {{url: "{sink.url(rule_url)}"}}}}
        """,
        "alerts.yaml": json.dumps({"alerts": [alert | {"notify": notify}]}),
    }


class Evaluator:
    """Runs alert rounds against the app's database and Redis, with the rule set and errors it has in force."""

    def __init__(self, r: Router) -> None:
        self.r = r
        self.engine = db.create_engine(r.settings.database_url)
        self.redis = create_redis(r.settings.redis_url)
        self.ruleset: RuleSet | None = None

    async def round(self, now: datetime | None = None) -> list[alerts.Transition]:
        try:
            self.ruleset = load_ruleset(self.r.settings.rules_dir, env={})
        except RuleSetError:
            assert self.ruleset is not None  # the app keeps the last set that loaded; so do we
        health = (await self.r.client.get("/health")).json()
        errors = health["checks"]["rules"].get("errors", [])
        return await alerts.evaluate(self.engine, self.redis, self.ruleset, errors, now=now)

    async def close(self) -> None:
        await self.engine.dispose()
        await self.redis.aclose(close_connection_pool=True)


@asynccontextmanager
async def started(
    router_factory: RouterFactory, redis_url: str, rules: dict[str, str], **settings: Any
) -> AsyncIterator[tuple[Router, Evaluator]]:
    client = aioredis.Redis.from_url(redis_url)
    slot = int(time.time() // INTERVAL)
    for n in (slot, slot + 1):  # the app's own periodic round never runs during the test
        await client.set(f"router:ops:alerts:{n}", b"test", ex=3 * int(INTERVAL))
    await client.aclose()
    values: dict[str, Any] = {"alert_interval": INTERVAL} | settings
    async with router_factory(rules, **values) as r:
        evaluator = Evaluator(r)
        try:
            yield r, evaluator
        finally:
            await evaluator.close()


async def wait_retrying(r: Router, event_id: str) -> None:
    async def retrying() -> bool:
        runs = (await r.event(event_id))["runs"]
        return bool(runs) and runs[0]["status"] == "retrying"

    await eventually(retrying, timeout=10, what="the run to wait for its retry")


def statuses(notified: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(n["alert"], n["status"], n["subject"]) for n in notified]


async def api_state(r: Router, alert_id: str) -> dict[str, Any]:
    body = (await r.client.get("/api/alerts")).json()
    (found,) = [a for a in body["alerts"] if a["id"] == alert_id]
    return dict(found)


# -- each kind ---------------------------------------------------------------------------------------------


async def test_dead_letters_fire_once_resolve_once_and_the_notification_is_retried(
    router_factory: RouterFactory, httpserver: HTTPServer, redis_clean: str
) -> None:
    sink = Sink(httpserver)
    sink.alert_failures = 1  # the first notification attempt fails: the action's retry delivers it
    alert = {"id": "dead", "kind": "dead_letters", "at_least": 1, "within": "15m", "description": "Runs are dying"}
    async with started(router_factory, redis_clean, files(sink, alert, rule_url="/gone"), retry_schedule="200ms") as (
        r,
        ev,
    ):
        assert await ev.round() == []
        event = (await r.hook("shop", {"n": 1})).json()["event_id"]
        assert (await r.wait_event(event))["status"] == "failed"  # a 400: failed for good, a dead letter
        first, second = await asyncio.gather(ev.round(), ev.round())  # two workers at once: one notification
        assert len(first + second) == 1
        await ev.round()  # still firing: nothing new
        (fired,) = await sink.wait(1)
        assert fired["status"] == "firing"
        assert fired["summary"].startswith("[FIRING] dead: 1 run(s) failed for good in the last 15m")
        assert fired["description"] == "Runs are dying"
        assert (await api_state(r, "dead"))["status"] == "firing"
        later = datetime.now(UTC) + timedelta(minutes=16)
        (resolved,) = await ev.round(now=later)
        assert resolved.status == "resolved"
        notified = await sink.wait(2)
    assert statuses(notified) == [("dead", "firing", ""), ("dead", "resolved", "")]
    assert notified[1]["summary"].startswith("[RESOLVED] dead:")


async def test_backlog_fires_when_work_waits_and_resolves_when_it_does_not(
    router_factory: RouterFactory, httpserver: HTTPServer, redis_clean: str
) -> None:
    sink = Sink(httpserver)
    alert = {"id": "backlog", "kind": "backlog", "older_than": "5m"}
    async with started(router_factory, redis_clean, files(sink, alert), retry_schedule="5m", retry_jitter=0) as (
        r,
        ev,
    ):
        event = (await r.hook("shop", {"n": 1})).json()["event_id"]
        sent = datetime.now(UTC)
        await wait_retrying(r, event)  # its attempt failed: the retry is due in 5 minutes
        assert await ev.round() == []  # not due yet: nothing waits
        (fired,) = await ev.round(now=sent + timedelta(minutes=11, seconds=2))  # due since minute 5: waited 6
        assert fired.status == "firing"
        assert await ev.round(now=sent + timedelta(minutes=12)) == []
        (resolved,) = await ev.round()  # back to now: the retry is not due, nothing waits
        assert resolved.status == "resolved"
        notified = await sink.wait(2)
    assert statuses(notified) == [("backlog", "firing", ""), ("backlog", "resolved", "")]
    assert "work has waited 6m" in notified[0]["summary"]


async def test_destination_failing_for_n_minutes_fires_and_resolves_on_success(
    router_factory: RouterFactory, httpserver: HTTPServer, redis_clean: str
) -> None:
    sink = Sink(httpserver)
    alert = {"id": "dest", "kind": "destination_failing", "for": "10m"}
    async with started(router_factory, redis_clean, files(sink, alert)) as (r, ev):
        event = (await r.hook("shop", {"n": 1})).json()["event_id"]
        failed_at = datetime.now(UTC)
        await r.wait_event(event)
        assert await ev.round() == []  # failing, not yet for 10 minutes: pending
        (state,) = (await api_state(r, "dest"))["states"]
        assert (state["subject"], state["status"]) == (url_destination(sink.url("/dest")), "pending")
        (fired,) = await ev.round(now=failed_at + timedelta(minutes=10, seconds=5))
        assert fired.status == "firing"
        sink.down = False
        ok = (await r.hook("shop", {"n": 2})).json()["event_id"]
        assert (await r.wait_event(ok))["status"] == "succeeded"
        (resolved,) = await ev.round()
        assert resolved.status == "resolved"
        notified = await sink.wait(2)
    assert [n["status"] for n in notified] == ["firing", "resolved"]
    assert notified[0]["subject"] == state["subject"]
    assert "has failed since" in notified[0]["summary"]
    assert "is delivering again" in notified[1]["summary"]


async def test_an_open_breaker_fires_at_once(
    router_factory: RouterFactory, httpserver: HTTPServer, redis_clean: str
) -> None:
    sink = Sink(httpserver)
    alert = {"id": "dest", "kind": "destination_failing", "for": "1h"}
    async with started(router_factory, redis_clean, files(sink, alert)) as (r, ev):
        ids = [(await r.hook("shop", {"n": n})).json()["event_id"] for n in range(12)]
        for event in ids:
            await r.wait_event(event, done=("failed", "routed"))

        async def tripped() -> bool:
            listed = (await r.client.get("/api/destinations")).json()
            return any((d.get("breaker") or {}).get("state") == "open" for d in listed["destinations"])

        await eventually(tripped, timeout=10, what="the breaker to open")
        scraped = (await r.client.get("/metrics")).text
        (fired,) = await ev.round()  # an hour of `for` does not delay an open breaker
        assert fired.status == "firing"
        (notified,) = await sink.wait(1)
    assert "circuit breaker is open" in notified["summary"]
    destination = url_destination(sink.url("/dest"))
    assert sample(scraped, "router_breaker_open", {"destination": destination}) == 1
    assert notified["subject"] == destination


async def test_a_silent_source_fires_after_its_window_and_resolves_when_events_come(
    router_factory: RouterFactory, httpserver: HTTPServer, redis_clean: str
) -> None:
    sink = Sink(httpserver)
    sink.down = False
    alert = {"id": "quiet", "kind": "source_silent", "sources": ["shop"]}
    rules = files(sink, alert, source_extra="expect: {at_least: 2, every: 1h}")
    async with started(router_factory, redis_clean, rules) as (r, ev):
        start = datetime.now(UTC)
        assert await ev.round() == []  # watching from now on: no verdict before a whole window
        assert await ev.round(now=start + timedelta(minutes=59)) == []
        (fired,) = await ev.round(now=start + timedelta(hours=1, seconds=1))
        assert (fired.status, fired.subject) == ("firing", "shop")
        for n in range(2):
            await r.wait_event((await r.hook("shop", {"n": n})).json()["event_id"])
        (resolved,) = await ev.round()
        assert resolved.status == "resolved"
        notified = await sink.wait(2)
    assert statuses(notified) == [("quiet", "firing", "shop"), ("quiet", "resolved", "shop")]
    assert "source shop got 0 event(s) in the last 1h (expects at least 2 every 1h)" in notified[0]["summary"]


async def test_rule_errors_fire_and_resolve_with_the_file_line_and_column(
    router_factory: RouterFactory, httpserver: HTTPServer, redis_clean: str
) -> None:
    sink = Sink(httpserver)
    alert = {"id": "broken", "kind": "rule_errors"}
    async with started(router_factory, redis_clean, files(sink, alert)) as (r, ev):
        assert await ev.round() == []
        write_rules(r.settings.rules_dir, {"bad.yaml": "rules:\n  - id: x\n    source: nowhere\n    steps: []\n"})

        async def failing() -> bool:
            return (await r.client.get("/health")).status_code == 503

        await eventually(failing, timeout=10, what="the broken file to be seen")
        (fired,) = await ev.round()
        assert fired.status == "firing"
        (r.settings.rules_dir / "bad.yaml").unlink()

        async def healthy() -> bool:
            return (await r.client.get("/health")).status_code == 200

        await eventually(healthy, timeout=10, what="the rules to load again")
        (resolved,) = await ev.round()
        assert resolved.status == "resolved"
        notified = await sink.wait(2)
    assert statuses(notified) == [("broken", "firing", ""), ("broken", "resolved", "")]
    assert "bad.yaml:" in notified[0]["detail"]
    assert "steps: needs at least 1 item(s)" in notified[0]["detail"]


# -- the notification's actions, and where alerts show ---------------------------------------------------------


@pytest.mark.ui
async def test_a_slack_notification_says_the_summary_and_the_overview_shows_the_alert(
    router_factory: RouterFactory, httpserver: HTTPServer, redis_clean: str
) -> None:
    slack: list[dict[str, Any]] = []
    httpserver.expect_request("/slack").respond_with_handler(
        lambda request: (slack.append(request.get_json()), Response("ok"))[1]
    )
    sink = Sink(httpserver)
    rules = files(sink, {"id": "x", "kind": "backlog"})
    rules["alerts.yaml"] = f"""
    alerts:
      - id: stuck
        kind: backlog
        older_than: 1m
        description: Deliveries are waiting
        notify:
          - {{id: chat, action: slack, with: {{url: "{sink.url("/slack")}"}}}}
    """
    async with started(router_factory, redis_clean, rules, worker=True, retry_schedule="5m") as (r, ev):
        event = (await r.hook("shop", {"n": 1})).json()["event_id"]
        await wait_retrying(r, event)
        (fired,) = await ev.round(now=datetime.now(UTC) + timedelta(minutes=7))
        await eventually(lambda: _async(bool(slack)), timeout=15, what="the Slack message")
        await sign_in(r)
        page = (await r.client.get("/")).text
    assert slack[0]["text"].startswith("[FIRING] stuck: work has waited")
    assert 'data-alert="stuck" data-status="firing"' in page
    assert 'data-testid="storage-figures"' in page
    assert fired.event_id is not None


async def _async(value: bool) -> bool:
    return value


def test_alert_files_are_checked_like_rule_files(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from router.cli.commands import main

    folder = write_rules(
        tmp_path / "rules",
        {
            "alerts.yaml": """
            sources:
              - id: shop
            alerts:
              - id: a
                kind: backlog
                for: 5m
                notify: [{id: n, action: http, with: {url: "https://example.com/x"}}]
              - id: b
                kind: source_silent
                sources: [shop]
                notify: [{id: n, action: http, with: {url: "not a url"}}]
            """,
            "shape.yaml": """
            alerts:
              - id: c
                kind: loud
                notify: []
            """,
        },
    )
    result = CliRunner().invoke(main, ["check", str(folder)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    expected = [
        "alerts.yaml:6:10: alerts[0].for: `for` does not apply to kind 'backlog' (its settings: older_than)",
        "alerts.yaml:10:15: alerts[1].sources[0]: source 'shop' has no `expect`; add e.g. `expect: {at_least: 1, "
        "every: 1h}` to it",
        "alerts.yaml:11:48: alerts[1].notify[0].with.url: not a valid URL",
        "shape.yaml:3:11: alerts[0].kind: Input should be 'destination_failing', 'dead_letters', 'backlog', "
        "'source_silent' or 'rule_errors'",
        "shape.yaml:4:13: alerts[0].notify: needs at least 1 item(s)",
    ]
    for text in expected:
        assert any(text in line for line in lines), f"{text!r} not in:\n{result.output}"
    assert "5 problem(s) found" in result.output
