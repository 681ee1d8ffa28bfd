"""Bulk retry says what really happens per run; Send-test runs are marked and left out of dead letters by default;
a failed Send test shows as a failure, with its error."""

from __future__ import annotations

import json

import pytest
from pytest_httpserver import HTTPServer

from tests.conftest import RouterFactory, eventually, sign_in
from tests.ui.test_builder import RULES, builder_form, fragment

pytestmark = pytest.mark.ui


async def test_a_send_test_of_an_unsaved_rule_is_marked_and_bulk_retry_says_it_cannot_be_retried(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/slack", method="POST").respond_with_data("broken", status=500)
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r, "tester", "editor")
        html = await fragment(
            r, "/rules/builder/test", csrf, builder_form(csrf, httpserver.url_for("/slack"), rule_id="fail-demo")
        )
        assert 'data-testid="test-failed"' in html, html  # a failure, not a green "Sent"
        assert 'data-testid="test-sent"' not in html
        assert "answered 500" in html
        r.client.headers["authorization"] = f"Bearer {r.token}"
        default = (await r.client.get("/api/dead-letters")).json()["dead_letters"]
        assert default == [], "a Send-test run is not a dead letter by default"
        tests = (await r.client.get("/api/dead-letters?tests=true")).json()["dead_letters"]
        assert [(d["rule_id"], d["test_send"]) for d in tests] == [("fail-demo", True)]
        page = await r.client.get("/dead-letters?tests=on")
        assert 'data-testid="dead-letter-test"' in page.text

        preview = await r.client.post("/api/runs/retry", json={"tests": True})
        body = preview.json()
        assert (body["runs"], body["retryable"], body["cannot"], body["steps_to_send"]) == (1, 0, 1, 0)
        (plan,) = body["plans"]
        assert plan["cannot"].startswith("rule 'fail-demo' is no longer loaded (a Send test of a rule never saved)")
        done = await r.client.post("/api/runs/retry", json={"tests": True, "confirm": body["confirm"]})
        assert done.json()["retried"] == 0
        assert "no longer loaded" in done.json()["errors"][0]["error"]
        one = await r.client.post(f"/api/runs/{plan['run_id']}/retry")
        assert one.status_code == 409
        assert "no longer loaded" in one.json()["detail"]

        ui = await r.client.post(
            "/dead-letters/preview",
            data={"_csrf": csrf, "tests": "on", "rule": "", "source": "", "status": "", "since_at": ""},
        )
        assert 'data-testid="bulk-plan-cannot"' in ui.text
        assert 'data-testid="bulk-none-retryable"' in ui.text
        assert 'data-testid="bulk-confirm"' not in ui.text


async def test_bulk_preview_counts_only_runs_that_can_be_retried(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/x").respond_with_data("down", status=500)
    step = {"id": "call", "action": "http", "with": {"url": httpserver.url_for("/x")}}
    both = [{"id": "kept", "source": "shop", "steps": [step]}, {"id": "gone", "source": "shop", "steps": [step]}]
    files = {"r.yaml": json.dumps({"sources": [{"id": "shop"}], "rules": both})}
    async with router_factory(files) as r:
        event = await r.wait_event((await r.hook("shop", {"n": 1})).json()["event_id"])
        assert sorted(run["status"] for run in event["runs"]) == ["dead", "dead"]
        version = (await r.client.get("/api/rules")).json()["version"]
        only = {"sources": [{"id": "shop"}], "rules": [{"id": "kept", "source": "shop", "steps": [step]}]}
        (r.settings.rules_dir / "r.yaml").write_text(json.dumps(only))

        async def reloaded() -> bool:
            return bool((await r.client.get("/api/rules")).json()["version"] != version)

        await eventually(reloaded, what="the rules to reload")
        body = (await r.client.post("/api/runs/retry", json={})).json()
        assert (body["runs"], body["retryable"], body["cannot"], body["steps_to_send"]) == (2, 1, 1, 1)
        plans = {p["rule_id"]: p for p in body["plans"]}
        assert plans["kept"]["would"] == "resume at step 'call': 1 step(s) to send"
        assert "rule 'gone' is no longer loaded" in plans["gone"]["cannot"]
        done = (await r.client.post("/api/runs/retry", json={"confirm": body["confirm"]})).json()
    assert done["retried"] == 1
    assert len(done["errors"]) == 1
