"""Runs waiting to retry: shown and filtered in the event list, hurried by Retry now, superseded by Replay."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from tests.conftest import Router, RouterFactory, eventually

pytestmark = pytest.mark.ui


def rules(url: str) -> dict[str, str]:
    step = {"id": "call", "action": "http", "with": {"url": url, "json": {"n": "{{ body.n }}"}}}
    return {
        "r.yaml": json.dumps({"sources": [{"id": "shop"}], "rules": [{"id": "r", "source": "shop", "steps": [step]}]})
    }


def answers(httpserver: HTTPServer, *statuses: int) -> list[int]:
    """Answer each request with the next status (the last one repeats); returns the log of statuses sent."""
    sent: list[int] = []

    def respond(_request: Any) -> Response:
        status = statuses[min(len(sent), len(statuses) - 1)]
        sent.append(status)
        return Response("x", status=status)

    httpserver.expect_request("/x").respond_with_handler(respond)
    return sent


async def waiting_run(r: Router) -> tuple[str, dict[str, Any]]:
    response = await r.hook("shop", {"n": 1})
    event_id = str(response.json()["event_id"])
    found: dict[str, Any] = {}

    async def retrying() -> bool:
        found.update(await r.event(event_id))
        return bool(found["runs"]) and found["runs"][0]["status"] == "retrying"

    await eventually(retrying, what="the run to wait for its retry")
    return event_id, found["runs"][0]


async def test_a_retrying_run_is_shown_filtered_and_retried_now_without_a_second_send(
    router_factory: RouterFactory, httpserver: HTTPServer, database_url: str
) -> None:
    sent = answers(httpserver, 503)  # always failing: Retry now's attempt fails too and waits 30 s
    schedule = {"retry_schedule": "3s,30s", "retry_jitter": 0.0}
    async with router_factory(rules(httpserver.url_for("/x")), database_url=database_url, **schedule) as r:
        event_id, run = await waiting_run(r)
        listed = (await r.client.get("/api/events?status=retrying")).json()["events"]
        assert [(e["id"], e["status"], e["run_state"]) for e in listed] == [(event_id, "routed", "retrying")]
        assert (await r.client.get("/api/events?status=dead")).json()["events"] == []
        page = await r.client.get("/events?status=retrying")
        assert f'data-event-id="{event_id}" data-status="retrying"' in page.text
        detail = await r.client.get(f"/events/{event_id}")
        assert 'data-testid="retry-now-button"' in detail.text
        assert 'data-testid="run-next-try"' in detail.text
        assert '<div class="hint next-try" data-testid="step-next-try">Next try' in detail.text  # its own line
        assert '<div class="error" data-testid="step-error">' in detail.text
        assert detail.text.index('data-testid="runs"') < detail.text.index('id="headers-heading"'), "runs come first"

        hurried = await r.client.post(f"/api/runs/{run['id']}/retry-now")
        assert hurried.status_code == 202, hurried.text
        assert hurried.json()["attempt"] == 2

        async def two_attempts() -> bool:
            steps = (await r.event(event_id))["runs"][0]["steps"]
            return len(steps[0]["attempts"]) == 2 and (await r.event(event_id))["runs"][0]["status"] == "retrying"

        await eventually(two_attempts, what="Retry now's attempt")
        await asyncio.sleep(3.5)  # the first retry's deferred job comes due now: it must do nothing
        event = await r.event(event_id)
        assert len(sent) == 2, f"the stale retry job sent again: {sent}"
        refused = await r.client.post(f"/api/runs/{run['id']}/retry")  # not failed or dead: that retry refuses
    (only,) = event["runs"]  # the same run, no second one
    assert only["id"] == run["id"]
    assert only["status"] == "retrying"
    assert [a["number"] for a in only["steps"][0]["attempts"]] == [1, 2]
    assert refused.status_code == 409


async def test_retry_now_refuses_a_run_that_is_not_waiting(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    answers(httpserver, 200)
    async with router_factory(rules(httpserver.url_for("/x"))) as r:
        event = await r.wait_event(str((await r.hook("shop", {"n": 1})).json()["event_id"]))
        response = await r.client.post(f"/api/runs/{event['runs'][0]['id']}/retry-now")
        missing = await r.client.post("/api/runs/NOPE/retry-now")
    assert response.status_code == 409
    assert "succeeded" in response.json()["detail"]
    assert missing.status_code == 404


async def test_replay_supersedes_a_run_still_retrying(
    router_factory: RouterFactory, httpserver: HTTPServer, database_url: str
) -> None:
    sent = answers(httpserver, 503, 200)
    schedule = {"retry_schedule": "3s", "retry_jitter": 0.0}
    async with router_factory(rules(httpserver.url_for("/x")), database_url=database_url, **schedule) as r:
        event_id, run = await waiting_run(r)
        replayed = await r.client.post(f"/events/{event_id}/replay", data={"resend": ""})  # the UI's button
        assert replayed.status_code == 200, replayed.text
        assert f"Run {run['id']} of r was still retrying: its pending retry is cancelled" in replayed.text
        event = await r.wait_event(event_id)
        await asyncio.sleep(3.5)  # the superseded run's retry comes due: it must do nothing
        event = await r.event(event_id)
        api = await r.client.post(f"/api/events/{event_id}/replay")  # nothing waits any more
    assert api.json()["superseded"] == []
    statuses = {x["id"]: x["status"] for x in event["runs"]}
    assert statuses[run["id"]] == "superseded"
    new = [x for x in event["runs"] if x["id"] != run["id"]]
    assert [x["status"] for x in new] == ["succeeded"]
    assert event["status"] == "succeeded"
    assert sent == [503, 200], "the superseded run delivered too"
