"""End to end on real Redis and SQL: a signed webhook in, a Slack-shaped message out, every step recorded."""

from __future__ import annotations

import json
from typing import Any

from pytest_httpserver import HTTPServer

from tests.conftest import RouterFactory
from tests.helpers import github_headers as signed_headers

SECRET = "It's a Secret to Everybody"


def github_headers(body: bytes, delivery: str = "d-1", event: str = "push") -> dict[str, str]:
    return signed_headers(body, SECRET, delivery=delivery, event=event)


def rules_for(sink: str) -> dict[str, str]:
    return {
        "github.yaml": f"""
        sources:
          - id: github
            verify: {{scheme: github, secret: "${{GH_SECRET}}"}}
        rules:
          - id: push-to-slack
            source: github
            filter: headers."x-github-event" == 'push' && body.ref == 'refs/heads/main'
            steps:
              - id: notify
                action: slack
                with:
                  url: "{sink}"
                  text: "{{{{ body.pusher.name }}}} pushed {{{{ body.commits | length }}}} commit(s)"
    """
    }


PUSH: dict[str, Any] = {"ref": "refs/heads/main", "pusher": {"name": "octocat"}, "commits": [{"id": "a"}, {"id": "b"}]}


async def test_signed_push_reaches_slack_and_is_recorded(
    router_factory: RouterFactory, httpserver: HTTPServer, database_url: str
) -> None:
    httpserver.expect_request("/slack", method="POST").respond_with_data("ok")
    body = json.dumps(PUSH).encode()
    async with router_factory(
        rules_for(httpserver.url_for("/slack")), database_url=database_url, env={"GH_SECRET": SECRET}
    ) as r:
        response = await r.hook("github", content=body, headers=github_headers(body))
        assert response.status_code == 202, response.text
        event_id = response.json()["event_id"]
        event = await r.wait_event(event_id)
    assert event["status"] == "succeeded"
    assert event["body"] == PUSH
    assert event["headers"]["x-github-event"] == "push"
    (run,) = event["runs"]
    assert run["rule_id"] == "push-to-slack"
    assert run["status"] == "succeeded"
    (step,) = run["steps"]
    assert step["status"] == "succeeded"
    assert step["rendered"] == {"url": httpserver.url_for("/slack"), "text": "octocat pushed 2 commit(s)"}
    assert step["attempts"][0]["outcome"] == "succeeded"
    assert step["attempts"][0]["response_status"] == 200
    (request, _response) = httpserver.log[0]
    assert request.get_json() == {"text": "octocat pushed 2 commit(s)"}
    assert request.headers["Idempotency-Key"] == f"{event_id}:push-to-slack:notify"


async def test_bad_signature_is_401_and_nothing_is_stored(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    body = json.dumps(PUSH).encode()
    headers = github_headers(body) | {"x-hub-signature-256": "sha256=" + "0" * 64}
    async with router_factory(rules_for(httpserver.url_for("/slack")), env={"GH_SECRET": SECRET}) as r:
        response = await r.hook("github", content=body, headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["title"] == "Signature verification failed"
        listing = (await r.client.get("/api/events")).json()
    assert listing["events"] == []


async def test_repeat_delivery_is_deduplicated(router_factory: RouterFactory, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/slack").respond_with_data("ok")
    body = json.dumps(PUSH).encode()
    async with router_factory(rules_for(httpserver.url_for("/slack")), env={"GH_SECRET": SECRET}) as r:
        first = await r.hook("github", content=body, headers=github_headers(body, delivery="same"))
        second = await r.hook("github", content=body, headers=github_headers(body, delivery="same"))
        assert first.status_code == 202
        assert second.status_code == 200
        assert second.json() == {"event_id": first.json()["event_id"], "duplicate": True}
        await r.wait_event(first.json()["event_id"])
        listing = (await r.client.get("/api/events")).json()
    assert len(listing["events"]) == 1
    assert len(httpserver.log) == 1
