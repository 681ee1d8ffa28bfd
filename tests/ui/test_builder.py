"""The rule builder and the rules page, through the real app with a signed-in browser session."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from router.records.models import AuditEntry, UiRule
from tests.conftest import REPO, Router, RouterFactory, eventually, sign_in

pytestmark = pytest.mark.ui  # these tests use the web UI's pages

RULES = {
    "sources.yaml": """
    sources:
      - {id: github, preset: github, verify: {scheme: none}}
      - {id: shop}
    """,
    "file.yaml": """
    rules:
      - id: file-push
        source: github
        description: A rule from a file.
        # Only pushes to main.
        filter: headers."x-github-event" == 'push' && body.ref == 'refs/heads/main'
        steps:
          - id: post
            action: http
            with:
              url: "http://127.0.0.1:1/never"
              # a folded template, as rule files often have
              json:
                text: >-
                  {{ body.pusher.name }} pushed
                  to {{ body.repository.full_name }}
    """,
}
PUSH = json.loads((REPO / "samples" / "github" / "push.json").read_text(encoding="utf-8"))
HX = {"hx-request": "true"}


def builder_form(csrf: str, sink: str, **overrides: str) -> dict[str, str]:
    """The form a person fills in for "GitHub push → Slack": two conditions and one Slack step."""
    form = {
        "_csrf": csrf,
        "original_id": "",
        "rule_extra": "",
        "sample_source": "github",
        "source": "github",
        "sample": "preset:github:push",
        "sample_json": "",
        "filter_mode": "visual",
        "filter_last": "rows",
        "advanced": "",
        "group-mode": "all",
        "cond-0-path": 'headers."x-github-event"',
        "cond-0-op": "equals",
        "cond-0-value": "push",
        "cond-0-type": "auto",
        "cond-1-path": "body.ref",
        "cond-1-op": "equals",
        "cond-1-value": "refs/heads/main",
        "cond-1-type": "auto",
        "step-0-action": "slack",
        "step-0-kind": "slack",
        "step-0-extra": "",
        "step-0-id": "notify",
        "step-0-f-url": sink,
        "step-0-f-text": "{{ body.pusher.name }} pushed to {{ body.repository.full_name }}",
        "new_kind": "slack",
        "rule_id": "gh-push",
        "description": "Pushes to Slack",
        "enabled": "on",
    }
    return form | overrides


async def submit(r: Router, path: str, **kwargs: Any) -> Any:
    """A plain form post, as a browser without htmx sends it (redirects not followed)."""
    return await r.client.post(path, follow_redirects=False, **kwargs)


async def fragment(r: Router, path: str, csrf: str, form: dict[str, str]) -> str:
    response = await r.client.post(path, data=form, headers=HX | {"x-csrf-token": csrf})
    assert response.status_code == 200, response.text
    return response.text


async def push(r: Router, ref: str = "refs/heads/main", event: str = "push") -> dict[str, Any]:
    sent = await r.hook("github", PUSH | {"ref": ref}, headers={"x-github-event": event})
    assert sent.status_code == 202, sent.text
    return await r.wait_event(sent.json()["event_id"])


async def audit_actions(r: Router) -> list[tuple[str, str]]:
    async with r.session() as session:
        rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
        return [(row.action, row.target) for row in rows]


@pytest.mark.postgres
async def test_a_rule_built_in_the_form_delivers_for_real(
    router_factory: RouterFactory, httpserver: HTTPServer, database_url: str
) -> None:
    httpserver.expect_request("/slack", method="POST").respond_with_data("ok")
    async with router_factory(RULES, database_url=database_url) as r:
        csrf = await sign_in(r, "builder-editor", "editor")
        page = await r.client.get("/rules/new?source=github")
        assert page.status_code == 200
        assert 'data-testid="builder-form"' in page.text
        assert "/static/builder.js" in page.text

        saved = await submit(r, "/rules/save", data=builder_form(csrf, httpserver.url_for("/slack")))
        assert saved.status_code == 303, saved.text
        assert saved.headers["location"] == "/rules?done=created&rule=gh-push"
        listing = await r.client.get(saved.headers["location"])
        assert "Rule gh-push saved" in listing.text
        assert 'data-rule="gh-push"' in listing.text
        assert 'data-testid="in-force"' in listing.text

        matched = await push(r)
        runs = {run["rule_id"]: run for run in matched["runs"]}
        assert runs["gh-push"]["status"] == "succeeded"
        assert runs["gh-push"]["rule_location"] == "ui:gh-push"
        (request, _), *_ = httpserver.log
        assert request.get_json() == {"text": "octocat pushed to octo-org/event-router"}

        other = await push(r, ref="refs/heads/dev")
        assert "gh-push" not in {run["rule_id"] for run in other["runs"]}
        assert len(httpserver.log) == 1
        assert ("ui_rule_created", "gh-push") in await audit_actions(r)


async def test_the_saved_yaml_is_a_rule_file_rule(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r)
        form = builder_form(csrf, "https://hooks.slack.com/services/T0/B0/X")
        shown = await fragment(r, "/rules/builder/yaml", csrf, form)
        assert 'data-testid="yaml"' in shown
        assert (await submit(r, "/rules/save", data=form)).status_code == 303
        stored = await r.client.get("/api/ui-rules/gh-push")
        text = stored.json()["yaml"]
        assert text.startswith("id: gh-push\nsource: github\n")
        assert "filter: headers.\"x-github-event\" == 'push' && body.ref == 'refs/heads/main'" in text
        download = await r.client.get("/rules/gh-push.yaml")
        assert download.status_code == 200
        assert download.headers["content-disposition"] == 'attachment; filename="gh-push.yaml"'
        assert download.text == text
        posted = await submit(r, "/rules/builder/download", data=form)
        assert posted.headers["content-disposition"] == 'attachment; filename="gh-push.yaml"'
        assert posted.text == text


async def test_the_condition_fragment_gives_expression_match_and_count(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r)
        for ref in ("refs/heads/main", "refs/heads/main", "refs/heads/dev"):
            assert (await r.hook("github", PUSH | {"ref": ref}, headers={"x-github-event": "push"})).status_code == 202
        form = builder_form(csrf, "https://hooks.slack.com/x", sample="preset:github:push")
        html = await fragment(r, "/rules/builder/condition", csrf, form)
        assert (
            '<code data-testid="condition-expression">headers.&#34;x-github-event&#34; == &#39;push&#39; '
            "&amp;&amp; body.ref == &#39;refs/heads/main&#39;</code>"
        ) in html
        assert re.search(r'data-testid="condition-sample">matches<', html)
        assert re.search(r"Would match <strong>2</strong> of the last 3 stored events", html)
        # the rows changed, so the advanced box follows (out of band)
        assert 'id="advanced"' in html
        assert 'hx-swap-oob="true"' in html

        dev = await fragment(r, "/rules/builder/condition", csrf, form | {"cond-1-value": "refs/heads/dev"})
        assert 'data-testid="condition-sample">does not match<' in dev
        assert "Would match <strong>1</strong> of the last 3" in dev

        wrong = await fragment(r, "/rules/builder/condition", csrf, form | {"cond-1-op": "greater_than"})
        assert "fix the conditions marked below" in wrong


async def test_rows_nest_and_the_advanced_box_round_trips(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r)
        form = builder_form(csrf, "https://hooks.slack.com/x")
        added = await fragment(r, "/rules/builder/rows", csrf, form | {"row_action": "addgroup:"})
        assert added.count('data-testid="cond-group"') == 2
        assert 'name="group-2-mode"' in added
        assert 'name="cond-2_0-path"' in added
        removed = await fragment(r, "/rules/builder/rows", csrf, form | {"row_action": "remove:0"})
        assert 'name="cond-1-path"' not in removed
        assert 'value="body.ref"' in removed

        expr = "body.ref == 'refs/heads/main' && (body.size > `100` || contains(body.tags, 'x'))"
        rebuilt = await fragment(
            r, "/rules/builder/advanced", csrf, form | {"advanced": expr, "filter_last": "advanced"}
        )
        assert 'name="filter_mode" value="visual"' in rebuilt
        assert 'name="cond-1_0-path" class="cond-path mono" value="body.size"' in rebuilt
        assert '<option value="any" selected>' in rebuilt
        assert 'data-testid="not-visual"' not in rebuilt

        raw = "body.ref == join('', ['refs/heads/', body.repository.default_branch])"
        kept = await fragment(r, "/rules/builder/advanced", csrf, form | {"advanced": raw})
        assert "cannot be shown visually" in kept
        assert 'name="filter_mode" value="advanced"' in kept
        assert 'data-testid="condition-sample">matches<' in kept  # the raw filter still runs on the sample
        saved_form = form | {"advanced": raw, "filter_mode": "advanced", "rule_id": "raw-filter"}
        yaml = await fragment(r, "/rules/builder/yaml", csrf, saved_form)
        assert "join(&#39;&#39;, [&#39;refs/heads/&#39;, body.repository.default_branch])" in yaml

        broken = await fragment(r, "/rules/builder/advanced", csrf, form | {"advanced": "body.ref =="})
        assert 'data-testid="condition-error"' in broken
        assert "invalid JMESPath" in broken


async def test_steps_come_from_the_action_schemas(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r)
        form = builder_form(csrf, "https://hooks.slack.com/x")
        for kind, fields in (
            ("email", ["to", "subject", "text", "cc", "from"]),
            ("api", ["url", "method", "headers", "query", "json", "success"]),
            ("emit", ["source", "body", "headers"]),
        ):
            html = await fragment(r, "/rules/builder/steps", csrf, form | {"step_action": "add", "new_kind": kind})
            assert html.count('data-testid="step"') == 2
            for name in fields:
                assert f'name="step-1-f-{name}"' in html, (kind, name)
        email = await fragment(r, "/rules/builder/steps", csrf, form | {"step_action": "add", "new_kind": "email"})
        assert re.search(r'for="step-1-f-to">to <abbr class="required"', email)
        assert "Recipient address or list of addresses." in email
        api = await fragment(r, "/rules/builder/steps", csrf, form | {"step_action": "add", "new_kind": "api"})
        assert '<option value="GET" selected>GET</option>' in api
        assert "{{ steps.notify.body }}" in api  # the picker offers the earlier step's output
        moved = await fragment(
            r,
            "/rules/builder/steps",
            csrf,
            form | {"step-1-action": "email", "step-1-kind": "email", "step-1-id": "mail", "step_action": "up:1"},
        )
        assert moved.index('value="mail"') < moved.index('value="notify"')
        gone = await fragment(r, "/rules/builder/steps", csrf, form | {"step_action": "remove:0"})
        assert 'data-testid="step"' not in gone


async def test_previews_render_against_the_sample_with_errors_at_the_field(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False, env={"ROUTER_SECRET_HOOK_TOKEN": "s3cr3t-value"}) as r:
        csrf = await sign_in(r)
        form = builder_form(
            csrf,
            "https://hooks.slack.com/x",
            **{
                "step-0-f-text": "{{ body.pusher.name }} / {{ secrets.HOOK_TOKEN }}",
                "step-0-f-username": "{{ body.nope.deeper }}",
                "step-0-f-icon_emoji": "{{ body.pusher.name | nosuchfilter }}",
            },
        )
        html = await fragment(r, "/rules/builder/preview", csrf, form)
        assert '<code data-testid="preview-text">octocat / [secret:HOOK_TOKEN]</code>' in html
        assert "s3cr3t-value" not in html
        assert 'data-testid="preview-error-icon_emoji"' in html
        assert "nosuchfilter" in html
        page = await submit(r, "/rules/save", data=form)
        assert page.status_code == 422
        assert 'data-testid="field-error-icon_emoji"' in page.text
        without = form | {"step-0-f-icon_emoji": ""}
        html = await fragment(r, "/rules/builder/preview", csrf, without)
        assert 'data-testid="preview-error-username"' in html
        assert "nope" in html
        steps = await fragment(r, "/rules/builder/steps", csrf, without)
        assert '<option value="{{ secrets.HOOK_TOKEN }}">secrets.HOOK_TOKEN</option>' in steps  # by name only
        assert "s3cr3t-value" not in steps


async def test_hostile_sample_json_is_escaped(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r)
        hostile = {"<script>alert(1)</script>": "<img src=x onerror=alert(2)>", 'a"b': ["</textarea><script>"]}
        form = builder_form(csrf, "https://hooks.slack.com/x", sample="paste", sample_json=json.dumps(hostile))
        for path in ("/rules/builder/sample", "/rules/builder/preview", "/rules/builder/condition"):
            html = await fragment(r, path, csrf, form | {"step-0-f-text": '{{ body["a\\"b"] }}'})
            assert "<script>" not in html
            assert "<img" not in html
        tree = await fragment(r, "/rules/builder/sample", csrf, form)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in tree
        assert 'data-path="body.&#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;"' in tree
        assert (await r.hook("shop", hostile)).status_code == 202
        page = await r.client.get("/rules/new?source=shop")
        assert "<script>alert" not in page.text
        assert "&lt;img src=x" in page.text
        other = await fragment(r, "/rules/builder/sample", csrf, form | {"source": "shop", "sample": "event:nope"})
        assert re.search(r'<option value="event:[0-9A-Z]{26}" selected>', other)  # the new source's latest event
        assert "<script>" not in other
        bad = await fragment(r, "/rules/builder/sample", csrf, form | {"sample_json": '{"a": '})
        assert 'data-testid="sample-error"' in bad
        assert "line 1, column 7" in bad


async def test_viewers_cannot_save_and_changes_need_csrf(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r, "just-looking", "viewer")
        builder = await r.client.get("/rules/new")
        assert builder.status_code == 200
        assert 'data-testid="viewer-notice"' in builder.text
        assert 'data-testid="save" disabled' in builder.text
        assert (await r.client.get("/rules")).status_code == 200
        assert 'data-testid="rule-new"' not in (await r.client.get("/rules")).text
        denied = await submit(r, "/rules/save", data=builder_form(csrf, "https://hooks.slack.com/x"))
        assert denied.status_code == 403
        assert (await submit(r, "/rules/builder/test", data=builder_form(csrf, "x"))).status_code == 403
        assert (await submit(r, "/rules/file-push/duplicate", data={"_csrf": csrf})).status_code == 403
        # previews only read
        assert "condition-result" in await fragment(r, "/rules/builder/condition", csrf, builder_form(csrf, "x"))

        r.client.cookies.clear()
        editor_csrf = await sign_in(r, "an-editor", "editor")
        form = builder_form(editor_csrf, "https://hooks.slack.com/x")
        no_token = await submit(r, "/rules/save", data={k: v for k, v in form.items() if k != "_csrf"})
        assert no_token.status_code == 403
        assert "CSRF" in no_token.text
        without = {k: v for k, v in form.items() if k != "_csrf"}
        assert (await submit(r, "/rules/builder/condition", data=without, headers=HX)).status_code == 403
        assert (await submit(r, "/rules/builder/test", data=without, headers=HX)).status_code == 403
        assert (await submit(r, "/rules/save", data=form)).status_code == 303


async def test_form_errors_show_next_to_the_fields(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r)
        form = builder_form(csrf, "not a url", rule_id="Bad Id")
        page = await submit(r, "/rules/save", data=form)
        assert page.status_code == 422
        assert 'data-testid="error-rule_id"' in page.text
        assert "must be a slug" in page.text
        page = await submit(r, "/rules/save", data=form | {"rule_id": "ok-id"})
        assert page.status_code == 422
        assert 'data-testid="field-error-url"' in page.text
        assert "not a valid URL" in page.text
        taken = await submit(r, "/rules/save", data=form | {"rule_id": "file-push", "step-0-f-url": "https://x.io"})
        assert taken.status_code == 422
        assert "already defined at" in taken.text
        assert "(a rule file); choose another id" in taken.text
        no_steps = {k: v for k, v in form.items() if not k.startswith("step-")} | {"rule_id": "ok-id"}
        page = await submit(r, "/rules/save", data=no_steps)
        assert 'data-testid="error-steps"' in page.text
        bad_row = await submit(r, "/rules/save", data=form | {"rule_id": "ok-id", "cond-0-path": "a..b"})
        assert bad_row.status_code == 422
        assert 'data-testid="cond-error"' in bad_row.text
        assert await audit_actions(r) == [("sign_in", "ui-admin")]


async def test_send_test_runs_the_unsaved_rule_through_the_pipeline(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/slack", method="POST").respond_with_data("ok")
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r, "tester", "editor")
        form = builder_form(csrf, httpserver.url_for("/slack"), rule_id="draft")
        html = await fragment(r, "/rules/builder/test", csrf, form)
        link = re.search(r'href="/events/([0-9A-Z]{26})" data-testid="test-event-link"', html)
        assert link, html
        assert 'badge succeeded">succeeded' in html
        event = await r.event(link.group(1))
        assert event["headers"]["x-router-test"] == "1"
        assert [(run["rule_id"], run["status"]) for run in event["runs"]] == [("draft", "succeeded")]
        (request, _), *_ = httpserver.log
        assert request.get_json() == {"text": "octocat pushed to octo-org/event-router"}
        async with r.session() as session:
            assert await session.get(UiRule, "draft") is None  # nothing was saved
        assert ("rule_test_sent", "draft") in await audit_actions(r)

        again = await fragment(r, "/rules/builder/test", csrf, form)
        assert 'data-testid="test-event-link"' in again  # a test is never a duplicate
        miss = await fragment(r, "/rules/builder/test", csrf, form | {"cond-1-value": "refs/heads/dev"})
        assert "does not match the rule&#39;s conditions; nothing was sent" in miss
        broken = await fragment(r, "/rules/builder/test", csrf, form | {"step-0-f-url": "nope"})
        assert 'data-testid="test-problem"' in broken
        assert "not a valid URL" in broken
        assert len(httpserver.log) == 2


async def test_edit_then_enable_disable_delete_from_the_list(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r)
        assert (await submit(r, "/rules/save", data=builder_form(csrf, "https://x.io/a"))).status_code == 303
        edit = await r.client.get("/rules/gh-push/edit")
        assert edit.status_code == 200
        assert 'name="original_id" value="gh-push"' in edit.text
        assert "readonly" in edit.text
        assert 'value="refs/heads/main"' in edit.text
        assert 'value="https://x.io/a"' in edit.text
        form = builder_form(csrf, "https://x.io/b", original_id="gh-push")
        updated = await submit(r, "/rules/save", data=form)
        assert updated.headers["location"] == "/rules?done=saved&rule=gh-push"
        assert (await r.client.get("/api/ui-rules/gh-push")).json()["version"] == 2

        off = await submit(r, "/rules/gh-push/disable", data={"_csrf": csrf})
        assert off.status_code == 303
        listing = (await r.client.get(off.headers["location"])).text
        assert "Rule gh-push disabled" in listing
        assert 'data-testid="rule-enable"' in listing
        assert "gh-push" not in {x["id"] for x in (await r.client.get("/api/rules")).json()["rules"]}
        assert "enabled: false" in (await r.client.get("/rules/gh-push.yaml")).text
        on = await submit(r, "/rules/gh-push/enable", data={"_csrf": csrf})
        assert on.status_code == 303
        assert "gh-push" in {x["id"] for x in (await r.client.get("/api/rules")).json()["rules"]}
        gone = await submit(r, "/rules/gh-push/delete", data={"_csrf": csrf})
        assert gone.headers["location"] == "/rules?done=deleted&rule=gh-push"
        assert (await r.client.get("/rules/gh-push/edit")).status_code == 404
        actions = [a for a, target in await audit_actions(r) if target == "gh-push"]
        assert actions == [
            "ui_rule_created",
            "ui_rule_updated",
            "ui_rule_disabled",
            "ui_rule_enabled",
            "ui_rule_deleted",
        ]


async def test_duplicating_a_file_rule_keeps_its_yaml_and_meaning(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/sink", method="POST").respond_with_data("ok")
    files = {**RULES, "file.yaml": RULES["file.yaml"].replace("http://127.0.0.1:1/never", httpserver.url_for("/sink"))}
    async with router_factory(files) as r:
        csrf = await sign_in(r)
        listing = (await r.client.get("/rules")).text
        assert re.search(r'data-testid="rule-location">[^<]*file\.yaml:2:5<', listing)
        copied = await submit(r, "/rules/file-push/duplicate", data={"_csrf": csrf})
        assert copied.headers["location"] == "/rules?done=duplicated&rule=file-push-copy"
        text = (await r.client.get("/api/ui-rules/file-push-copy")).json()["yaml"]
        assert "# Only pushes to main." in text
        assert "# a folded template" in text
        assert "text: >-" in text
        assert "enabled: false" in text
        rules = {x["id"]: x for x in (await r.client.get("/api/rules")).json()["rules"]}
        assert "file-push-copy" not in rules  # disabled: it would deliver twice
        assert (await submit(r, "/rules/file-push-copy/enable", data={"_csrf": csrf})).status_code == 303
        rules = {x["id"]: x for x in (await r.client.get("/api/rules")).json()["rules"]}
        original, copy = rules["file-push"], rules["file-push-copy"]
        assert copy["location"] == "ui:file-push-copy"
        assert {**original["spec"], "id": "file-push-copy"} == copy["spec"]

        event = await push(r)
        assert sorted(run["rule_id"] for run in event["runs"]) == ["file-push", "file-push-copy"]
        bodies = [req.get_json() for req, _ in httpserver.log]
        assert bodies == [{"text": "octocat pushed to octo-org/event-router"}] * 2
        second = await submit(r, "/rules/file-push/duplicate", data={"_csrf": csrf})
        assert second.headers["location"].endswith("rule=file-push-copy-2")
        download = await r.client.get("/rules/file-push.yaml")
        assert download.text.startswith("id: file-push\n")
        assert "# Only pushes to main." in download.text


async def test_import_yaml_opens_the_builder(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r)
        one = """
id: imported
source: shop
filter: body.total > `100`
steps:
  - id: tell
    action: emit
    with: {source: github, body: {total: "{{ body.total }}"}}
"""
        page = await submit(r, "/rules/import", data={"_csrf": csrf, "yaml": one})
        assert page.status_code == 200
        assert 'name="rule_id" value="imported"' in page.text
        assert 'value="body.total"' in page.text
        assert '<option value="greater_than" selected>' in page.text
        assert 'name="step-0-f-source"' in page.text
        assert '<option value="github" selected>github</option>' in page.text

        two = "rules:\n" + "\n".join(
            "  - " + "\n    ".join(block.strip().splitlines())
            for block in (one, one.replace("imported", "second").replace("> `100`", "< `5`"))
        )
        choose = await submit(r, "/rules/import", data={"_csrf": csrf, "yaml": two})
        assert 'data-testid="import-choose"' in choose.text
        assert 'value="second"' in choose.text
        picked = await submit(r, "/rules/import", data={"_csrf": csrf, "yaml": two, "choose": "second"})
        assert 'name="rule_id" value="second"' in picked.text
        assert '<option value="less_than" selected>' in picked.text

        bad = await submit(r, "/rules/import", data={"_csrf": csrf, "yaml": "id: x\nsteps: [\n"})
        assert bad.status_code == 422
        assert "import:3:1: invalid YAML" in bad.text
        only_sources = await submit(r, "/rules/import", data={"_csrf": csrf, "yaml": "sources:\n  - id: a\n"})
        assert "defines sources but no rules" in only_sources.text
        anchors = await submit(r, "/rules/import", data={"_csrf": csrf, "yaml": "a: &x 1\nb: *x\n"})
        assert anchors.status_code == 422
        assert "anchors and aliases" in anchors.text


async def test_a_saved_rule_reaches_a_standalone_worker(router_factory: RouterFactory, httpserver: HTTPServer) -> None:
    """The web saves; a worker that watches on its own picks the rule up from the database (the 1 s poll)."""
    from router.worker import build_worker

    httpserver.expect_request("/slack", method="POST").respond_with_data("ok")
    async with router_factory(RULES, worker=False) as r:
        worker = build_worker(r.settings, handle_signals=False)
        task = asyncio.create_task(worker.async_run())
        try:

            async def started() -> bool:
                return "state" in worker.ctx and worker.ctx["state"].rules.loaded

            await eventually(started, what="the worker to start")
            csrf = await sign_in(r)
            saved = await submit(r, "/rules/save", data=builder_form(csrf, httpserver.url_for("/slack")))
            assert saved.status_code == 303

            async def picked_up() -> bool:
                return "gh-push" in worker.ctx["state"].rules.current.rules

            await eventually(picked_up, timeout=5, what="the worker to load the UI rule")
            event = await push(r)
            assert [run["rule_id"] for run in event["runs"] if run["status"] == "succeeded"] == ["gh-push"]
            assert len(httpserver.log) == 1
        finally:
            await worker.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


ROUTER = [sys.executable, "-m", "router"]


@pytest.mark.browser
def test_github_push_to_slack_in_a_real_browser(tmp_path: Path, redis_url: str) -> None:
    """The whole no-code flow in Chromium: click fields of the sample, add a Slack step, send a test, save."""
    from tests.browser.support import chromium, new_page, require_browser, router_stack, screenshot
    from tests.browser.support import sign_in as browser_sign_in

    require_browser()
    with router_stack(tmp_path, redis_url) as stack, chromium() as browser:
        page = new_page(browser, stack)
        page.on("dialog", lambda dialog: dialog.accept())  # the Send test confirmation
        browser_sign_in(page)
        started = time.monotonic()
        page.goto("/rules")
        page.get_by_test_id("rule-new").click()
        page.wait_for_url("**/rules/new")
        page.wait_for_load_state()  # htmx is set up: a change before it would go unheard (a flake under load)
        page.get_by_test_id("source-select").select_option("github")
        page.wait_for_selector("[data-testid=source-info]:has-text('/hooks/github')")
        # conditions: click a path box, then a field of GitHub's sample push
        box = page.get_by_test_id("cond-path").first.bounding_box()
        assert box is not None
        assert box["width"] >= 300, f"the condition's field box is {box['width']} px wide: paths get cut"
        page.get_by_test_id("cond-path").first.click()
        page.locator("[data-path='headers.\"x-github-event\"']").click()
        page.get_by_test_id("cond-value").first.fill("push")
        page.get_by_test_id("cond-add").first.click()
        page.wait_for_selector("[data-testid=cond-row] >> nth=1")
        page.get_by_test_id("cond-path").nth(1).click()
        page.locator("[data-path='body.ref']").click()
        page.get_by_test_id("cond-value").nth(1).fill("refs/heads/main")
        expression = page.get_by_test_id("condition-expression")
        expression.filter(has_text="refs/heads/main").wait_for()
        assert expression.inner_text() == "headers.\"x-github-event\" == 'push' && body.ref == 'refs/heads/main'"
        assert page.get_by_test_id("condition-sample").inner_text() == "matches"
        # a Slack step, its text made by clicking a field of the sample
        page.get_by_test_id("new-kind").select_option("slack")
        page.get_by_test_id("step-add").click()
        page.fill("#step-0-f-url", f"{stack.url}/inbox/slack")
        page.click("#step-0-f-text")
        page.locator("[data-path='body.pusher.name']").click()
        page.type("#step-0-f-text", " pushed to ")
        page.get_by_test_id("var-picker").select_option(label="body.repository.full_name")
        assert page.input_value("#step-0-f-text") == "{{ body.pusher.name }} pushed to {{ body.repository.full_name }}"
        page.get_by_test_id("preview-text").filter(has_text="event-router").wait_for()
        assert page.get_by_test_id("preview-text").inner_text() == "octocat pushed to octo-org/event-router"
        page.fill("#rule-id", "push-to-slack")
        page.get_by_test_id("yaml").filter(has_text="id: push-to-slack").wait_for()
        # send it for real, then save it
        page.get_by_test_id("send-test").click()
        page.get_by_test_id("test-event-link").wait_for(timeout=15_000)
        page.evaluate("document.getElementById('match-heading').scrollIntoView()")
        screenshot(page, "rule-builder")
        page.get_by_test_id("save").click()
        assert "Rule push-to-slack saved" in page.get_by_test_id("notice").inner_text()
        print(f"rule builder: GitHub push -> Slack built, tested and saved in {time.monotonic() - started:.1f} s")
        with stack.api() as api:
            sent = api.get("/api/inbox/slack").json()["requests"]
            assert [r["body"] for r in sent] == [{"text": "octocat pushed to octo-org/event-router"}]
            assert api.get("/api/ui-rules/push-to-slack").json()["in_force"] is True
        # raw JMESPath the rows cannot show stays as written
        page.goto("/rules/push-to-slack/edit")
        page.get_by_test_id("advanced-open").click()
        page.fill("#advanced", "body.ref == join('', ['refs/heads/', body.repository.default_branch])")
        page.get_by_test_id("not-visual").wait_for()
        assert page.get_by_test_id("condition-sample").inner_text() == "matches"
        # a real signed push arrives: the events page shows it live, the event page shows the delivery
        page.goto("/events")
        sent_push = subprocess.run(
            [*ROUTER, "send", "github", "samples/github-push.json", "--url", stack.url, "-H", "X-GitHub-Event: push"],
            cwd=stack.workdir,
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert sent_push.returncode == 0, sent_push.stdout + sent_push.stderr
        event_id = json.loads(sent_push.stdout.split(" ", 1)[1])["event_id"]
        page.locator(f"[data-testid=event-row][data-event-id='{event_id}']").wait_for()
        page.locator(f"[data-testid=event-row][data-event-id='{event_id}'] [data-testid=event-link]").click()
        page.wait_for_url(f"**/events/{event_id}")
        page.locator("[data-testid^=run-][data-status=succeeded]").nth(1).wait_for(timeout=15_000)
        rules = page.locator("[data-testid=runs] h3").all_inner_texts()
        assert any("push-to-slack" in r for r in rules), rules  # the rule built in the browser ran
        assert stack.csp_violations == [], "the builder broke the Content-Security-Policy:\n" + "\n".join(
            stack.csp_violations
        )
