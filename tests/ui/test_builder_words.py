"""The rule builder speaks plainly: missing sample fields by name, no shouting about fields not filled in yet,
backticks shown as code, and recent events in the sample picker by their type, not their id."""

from __future__ import annotations

import pytest

from tests.conftest import RouterFactory, sign_in
from tests.ui.test_builder import PUSH, RULES, builder_form, fragment

pytestmark = pytest.mark.ui


async def test_a_template_reading_a_missing_field_names_the_field(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r, "words", "editor")
        form = builder_form(csrf, "http://127.0.0.1:9/x", **{"step-0-f-text": "{{ body.nope.deeper }} hi"})
        html = await fragment(r, "/rules/builder/preview", csrf, form)
    assert "the sample has no field <code>body.nope</code>" in html
    assert "dict object" not in html
    assert "`" not in html.split('data-testid="preview-error-text"', 1)[1].split("</p>", 1)[0]


async def test_a_new_step_is_not_red_before_anything_is_typed(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r, "words", "editor")
        form = builder_form(csrf, "http://127.0.0.1:9/x")
        added = await fragment(r, "/rules/builder/steps", csrf, form | {"step_action": "add", "new_kind": "email"})
        more = form | {"step-1-action": "email", "step-1-kind": "email", "step-1-id": "email", "step-1-extra": ""}
        preview = await fragment(r, "/rules/builder/preview", csrf, more)
        saved = await r.client.post("/rules/save", data=more | {"rule_id": "words"}, follow_redirects=False)
    assert "required field is missing" not in added
    assert "required field is missing" not in preview
    assert "required field is missing" in saved.text  # saving says so, beside the field
    assert "(instead of <code>json</code>)" in added or "<code>" in added  # hints show code, not backticks


async def test_the_sample_picker_names_recent_events_by_type(router_factory: RouterFactory) -> None:
    async with router_factory(RULES) as r:
        sent = await r.hook("github", PUSH, headers={"x-github-event": "push"})
        event_id = sent.json()["event_id"]
        await r.wait_event(event_id)
        csrf = await sign_in(r, "words", "editor")
        page = await fragment(r, "/rules/builder/sample", csrf, builder_form(csrf, "http://127.0.0.1:9/x"))
    option = page.split(f'value="event:{event_id}"', 1)[1].split("</option>", 1)[0]
    assert "push" in option
    assert "octo-org/event-router" in option
    assert event_id[-8:] not in option


async def test_retry_settings_are_in_the_step_form_and_saved(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r, "words", "editor")
        form = builder_form(csrf, "http://127.0.0.1:9/x") | {
            "rule_id": "with-retries",
            "step-0-retry_attempts": "4",
            "step-0-retry_delays": "5s, 1m,10m",
        }
        saved = await r.client.post("/rules/save", data=form, follow_redirects=False)
        assert saved.status_code == 303, saved.text
        r.client.headers["authorization"] = f"Bearer {r.token}"
        yaml_text = (await r.client.get("/api/ui-rules/with-retries")).json()["yaml"]
        edit = await r.client.get("/rules/with-retries/edit")
    assert "max_attempts: 4" in yaml_text
    assert "- 5s" in yaml_text
    assert "- 10m" in yaml_text
    assert 'data-testid="step-retry-attempts" value="4"' in edit.text or 'value="4" inputmode="numeric"' in edit.text
    assert "5s, 1m, 10m" in edit.text


UNKNOWN = """
id: imported
source: github
steps:
  - id: tell
    action: slak
    with:
      url: https://hooks.slack.example/T1
      text: "hello {{ body.ref }}"
"""


async def test_importing_a_step_with_an_unknown_action_keeps_its_settings_and_says_so_once(
    router_factory: RouterFactory,
) -> None:
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r, "words", "editor")
        page = await r.client.post("/rules/import", data={"_csrf": csrf, "yaml": UNKNOWN})
        assert page.status_code == 200, page.text
        assert page.text.count("unknown action &#39;slak&#39;") == 1, "said once"
        assert 'data-testid="step-action-choose"' in page.text
        assert "hooks.slack.example/T1" in page.text  # the step's `with:` is kept, not dropped
        form = builder_form(csrf, "") | {
            "step-0-action": "slack",
            "step-0-kind": "",
            "step-0-id": "tell",
            "step-0-extra": '{"with": {"url": "https://hooks.slack.example/T1", "text": "hello {{ body.ref }}"}}',
            "step-0-f-url": "",
            "step-0-f-text": "",
            "step_action": "",
        }
        chosen = await fragment(r, "/rules/builder/steps", csrf, form)
    assert 'value="https://hooks.slack.example/T1"' in chosen  # the kept settings fill the chosen action's form
    assert "hello {{ body.ref }}" in chosen
