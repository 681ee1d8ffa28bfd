"""The ``slack`` action: incoming webhooks and chat.postMessage against a Slack-shaped HTTP server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from tests.conftest import RouterFactory

TOKEN = "xoxb-1111-2222-SeCrEtToKeN"
BAD_TOKEN = "xoxb-3333-SeCrEt\r\nX-Injected: 1"
EVENT: dict[str, Any] = {"repo": "octo/app", "count": 3, "user": "ada"}


def rule_files(*steps: dict[str, Any]) -> dict[str, str]:
    rule = {"id": "notify", "source": "ci", "steps": list(steps)}
    return {"rules.yaml": json.dumps({"sources": [{"id": "ci"}], "rules": [rule]}, indent=2)}


async def run_event(r: Any, body: Any = EVENT) -> tuple[dict[str, Any], str]:
    response = await r.hook("ci", body)
    assert response.status_code == 202, response.text
    event: dict[str, Any] = await r.wait_event(response.json()["event_id"])
    text = (await r.client.get(f"/api/events/{event['id']}")).text
    return event, text


BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*{{ body.repo }}*"}}]


@pytest.mark.parametrize(
    ("with_", "payload"),
    [
        ({"text": "{{ body.user }} pushed {{ body.count }} commits"}, {"text": "ada pushed 3 commits"}),
        ({"text": "{{ body.count }}"}, {"text": "3"}),
        (
            {"text": "fallback", "blocks": BLOCKS, "username": "CI {{ body.repo }}", "icon_emoji": ":rocket:"},
            {
                "text": "fallback",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*octo/app*"}}],
                "username": "CI octo/app",
                "icon_emoji": ":rocket:",
            },
        ),
    ],
    ids=["text", "number-as-text", "blocks-username-icon"],
)
async def test_incoming_webhook_posts_the_message(
    router_factory: RouterFactory,
    httpserver: HTTPServer,
    database_url: str,
    with_: dict[str, Any],
    payload: dict[str, Any],
) -> None:
    httpserver.expect_request("/services/T1/B1/x", method="POST").respond_with_data("ok")
    url = httpserver.url_for("/services/T1/B1/x")
    files = rule_files({"id": "post", "action": "slack", "with": {"url": url, **with_}})
    async with router_factory(files, database_url=database_url) as r:
        event, _ = await run_event(r)
    ((request, _),) = httpserver.log
    assert request.get_json() == payload
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == f"{event['id']}:notify:post"
    assert "Authorization" not in request.headers
    (step,) = event["runs"][0]["steps"]
    assert (event["status"], step["status"], step["error"]) == ("succeeded", "succeeded", None)
    assert step["output"]["body"] == "ok"
    assert step["attempts"][0]["response_status"] == 200
    assert json.loads(step["attempts"][0]["request"]["body"]) == payload


async def test_chat_post_message_with_a_secret_token(
    router_factory: RouterFactory, httpserver: HTTPServer, database_url: str
) -> None:
    reply = {"ok": True, "channel": "C123", "ts": "1700000000.000100"}
    httpserver.expect_request("/api/chat.postMessage", method="POST").respond_with_json(reply)
    steps = [
        {
            "id": "post",
            "action": "slack",
            "with": {"token": "{{ secrets.SLACK_TOKEN }}", "channel": "#builds", "text": "{{ body.repo }} is green"},
        },
        {
            "id": "reply",
            "action": "slack",
            "with": {
                "token": "{{ secrets.SLACK_TOKEN }}",
                "channel": "{{ steps.post.body.channel }}",
                "thread_ts": "{{ steps.post.body.ts }}",
                "text": "{{ body.count }} commits by {{ body.user }}",
            },
        },
    ]
    async with router_factory(
        rule_files(*steps),
        database_url=database_url,
        slack_api_url=httpserver.url_for("/api"),
        env={"ROUTER_SECRET_SLACK_TOKEN": TOKEN},
    ) as r:
        event, text = await run_event(r)
    assert [req.get_json() for req, _ in httpserver.log] == [
        {"text": "octo/app is green", "channel": "#builds"},
        {"text": "3 commits by ada", "thread_ts": "1700000000.000100", "channel": "C123"},
    ]
    for request, _ in httpserver.log:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert event["status"] == "succeeded"
    post, reply_step = event["runs"][0]["steps"]
    assert post["rendered"] == {"token": "[secret:SLACK_TOKEN]", "channel": "#builds", "text": "octo/app is green"}
    assert reply_step["rendered"]["token"] == "[secret:SLACK_TOKEN]"
    assert post["output"]["body"] == reply
    assert post["attempts"][0]["request"]["headers"]["authorization"] == "[redacted]"
    assert post["attempts"][0]["request"]["url"] == httpserver.url_for("/api/chat.postMessage")
    assert TOKEN not in text


@pytest.mark.parametrize(
    ("error", "retryable"),
    [("channel_not_found", False), ("not_in_channel", False), ("ratelimited", True)],
)
async def test_chat_post_message_ok_false_fails_the_step(
    router_factory: RouterFactory, httpserver: HTTPServer, error: str, retryable: bool
) -> None:
    httpserver.expect_request("/api/chat.postMessage").respond_with_json({"ok": False, "error": error})
    step = {
        "id": "post",
        "action": "slack",
        "with": {"token": "{{ secrets.SLACK_TOKEN }}", "channel": "#x", "text": "hi"},
    }
    async with router_factory(
        rule_files(step), slack_api_url=httpserver.url_for("/api"), env={"ROUTER_SECRET_SLACK_TOKEN": TOKEN}
    ) as r:
        event, text = await run_event(r)
    (run,) = event["runs"]
    (post,) = run["steps"]
    message = f"Slack chat.postMessage failed: {error}" + (" (gave up after 1 attempt)" if retryable else "")
    ended = "dead" if retryable else "failed"
    assert (event["status"], run["status"], post["status"]) == ("failed", ended, ended)
    assert post["error"] == message
    assert run["error"] == f"step 'post': {message}"
    (attempt,) = post["attempts"]
    assert (attempt["outcome"], attempt["error"], attempt["retryable"]) == ("failed", message, retryable)
    assert attempt["response_status"] == 200
    assert json.loads(attempt["response_body"]) == {"ok": False, "error": error}
    assert attempt["request"]["headers"]["authorization"] == "[redacted]"
    assert TOKEN not in text


async def test_chat_post_message_without_ok_true_fails(router_factory: RouterFactory, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/chat.postMessage").respond_with_data("ok")
    step = {"id": "post", "action": "slack", "with": {"token": "xoxb-literal", "channel": "C1", "text": "hi"}}
    async with router_factory(rule_files(step), slack_api_url=httpserver.url_for("/api")) as r:
        event, _ = await run_event(r)
    (post,) = event["runs"][0]["steps"]
    assert (event["status"], post["error"]) == ("failed", "Slack chat.postMessage failed: no ok:true in the response")


async def test_incoming_webhook_refusal_is_a_failed_step(router_factory: RouterFactory, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("no_service", status=404)
    url = httpserver.url_for("/hook")
    async with router_factory(rule_files({"id": "post", "action": "slack", "with": {"url": url, "text": "hi"}})) as r:
        event, _ = await run_event(r)
    (post,) = event["runs"][0]["steps"]
    assert (event["status"], post["status"], post["error"]) == ("failed", "failed", f"POST {url} answered 404")
    assert post["attempts"][0]["response_body"] == "no_service"


@pytest.mark.parametrize(
    ("with_", "problem"),
    [
        (
            {"url": "{{ body.hook }}", "text": "hi"},
            "with.url: not a valid URL: use an absolute http:// or https:// URL",
        ),
        ({"token": "{{ secrets.BAD_TOKEN }}", "channel": "C1", "text": "hi"}, "with.token: token must not contain"),
        ({"url": "http://example.invalid/x", "text": "{{ body.empty }}"}, "set `text`, `blocks` or both"),
        ({"url": "http://example.invalid/x", "blocks": "{{ body.hook }}"}, "with.blocks: Input should be a valid list"),
    ],
    ids=["bad-url", "token-with-newline", "empty-text", "blocks-not-a-list"],
)
async def test_invalid_rendered_settings_fail_without_sending(
    router_factory: RouterFactory, httpserver: HTTPServer, with_: dict[str, Any], problem: str
) -> None:
    httpserver.expect_request("/api/chat.postMessage").respond_with_json({"ok": True})
    async with router_factory(
        rule_files({"id": "post", "action": "slack", "with": with_}),
        slack_api_url=httpserver.url_for("/api"),
        env={"ROUTER_SECRET_BAD_TOKEN": BAD_TOKEN},
    ) as r:
        event, text = await run_event(r, {"hook": "ftp://example.org/x", "empty": ""})
    (post,) = event["runs"][0]["steps"]
    assert (event["status"], post["status"]) == ("failed", "failed")
    assert "invalid settings after rendering" in post["error"]
    assert problem in post["error"]
    assert post["attempts"][0]["request"] is None
    assert httpserver.log == []
    assert "SeCrEt" not in text
