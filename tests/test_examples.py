"""The shipped examples work: rules/ loads, each rule matches its sample and renders exactly what the docs show.

No Redis, database or network: the rule set is compiled with ``router.rules.ruleset.load_ruleset`` and each
rule is run through ``router.tryout.dryrun.dry_run``, the code the worker and the dry-run API use.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from router.cli.commands import main
from router.pipeline.ingest import dedupe_key
from router.pipeline.match import build_context, event_dict, render_step
from router.pipeline.signatures import sign, verify
from router.rules.compiled import RuleSet
from router.rules.ruleset import load_ruleset
from router.rules.schema import json_schema_text
from router.tryout.dryrun import dry_run
from tests.helpers import github_signature

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "rules"
SAMPLES = REPO / "samples"
SCHEMA_LINE = "# yaml-language-server: $schema=./rule.schema.json\n"
TEST_SCHEMA_LINE = "# yaml-language-server: $schema=./rule-test.schema.json\n"
INBOX = "http://127.0.0.1:8000/inbox"

GITHUB_TEXT = "octocat pushed 2 commit(s) to octo-org/event-router@main: Fix the build"
SHIP_TO = {
    "address": {
        "city": "San Francisco",
        "country": "US",
        "line1": "510 Townsend St",
        "line2": None,
        "postal_code": "94103",
        "state": "CA",
    },
    "carrier": None,
    "name": "Jenny Rosen",
    "phone": "+14155550123",
    "tracking_number": None,
}


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    """The rules as a fresh machine sees them: no environment variable set."""
    return load_ruleset(RULES, env={})


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def event(source: str, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return event_dict(
        id="01JEXAMPLE0000000000000000",
        source=source,
        received_at="2026-11-25T10:15:02+00:00",
        path=f"/hooks/{source}",
        headers={"content-type": "application/json", **(headers or {})},
        body=body,
    )


def run(
    ruleset: RuleSet,
    rule_id: str,
    ev: dict[str, Any],
    outputs: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
) -> dict[str, Any]:
    result = dry_run(ruleset.rules[rule_id], ev, secrets or {}, outputs)
    assert "filter_error" not in result, result
    return result


def step(result: dict[str, Any], step_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in result["steps"] if s["id"] == step_id)
    return found


# -- the folder ------------------------------------------------------------------------------------


def test_router_check_passes_on_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(main, ["check", "rules/"])
    assert result.exit_code == 0, result.output
    assert "ok: 3 source(s), 3 rule(s) in 3 file(s)" in result.output


def test_rules_load_without_any_secret_set(ruleset: RuleSet) -> None:
    assert sorted(ruleset.sources) == ["forms", "github", "stripe"]
    assert sorted(ruleset.rules) == ["forms-signup-welcome", "github-push-to-slack", "stripe-paid-order-to-shipping"]
    # Every signature secret falls back to its dev default, and says so.
    assert len(ruleset.warnings) == 3
    assert all("uses the default secret" in w for w in ruleset.warnings)


def test_set_secrets_replace_the_defaults() -> None:
    rs = load_ruleset(RULES, env={"GITHUB_WEBHOOK_SECRET": "real", "STRIPE_WEBHOOK_SECRET": "whsec_x"})
    github, stripe = rs.sources["github"].verify, rs.sources["stripe"].verify
    assert github is not None
    assert github.secret == "real"
    assert stripe is not None
    assert stripe.secret == "whsec_x"
    assert len(rs.warnings) == 1  # forms still on its default


@pytest.mark.parametrize("path", sorted(RULES.glob("*.y*ml")), ids=lambda p: p.name)
def test_rule_files_point_editors_at_the_schema(path: Path) -> None:
    """Rule files at rule.schema.json, rule tests at rule-test.schema.json, on their first line."""
    expected = TEST_SCHEMA_LINE if path.name.endswith((".test.yaml", ".test.yml")) else SCHEMA_LINE
    assert path.read_text(encoding="utf-8").startswith(expected)


def test_rule_test_schema_file_is_up_to_date() -> None:
    from router.tryout.ruletest_models import json_schema_text as test_schema_text

    assert (RULES / "rule-test.schema.json").read_text(encoding="utf-8") == test_schema_text(), (
        "rules/rule-test.schema.json is stale: run `router schema --tests -o rules/rule-test.schema.json`"
    )


def _schema_fields(node: object, path: str = "") -> list[str]:
    """Properties of a JSON Schema without a description (a property that is a bare $ref is described there)."""
    found: list[str] = []
    if isinstance(node, dict):
        for name, prop in (node.get("properties") or {}).items():
            if isinstance(prop, dict) and "description" not in prop and set(prop) != {"$ref"}:
                found.append(f"{path}.{name}")
        for key, value in node.items():
            found += _schema_fields(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _schema_fields(value, f"{path}[{i}]")
    return found


@pytest.mark.parametrize("name", ["rule.schema.json", "rule-test.schema.json"])
def test_every_schema_field_is_described(name: str) -> None:
    schema = json.loads((RULES / name).read_text(encoding="utf-8"))
    assert _schema_fields(schema) == []


def test_schema_file_is_up_to_date() -> None:
    assert (RULES / "rule.schema.json").read_text(encoding="utf-8") == json_schema_text(), (
        "rules/rule.schema.json is stale: run `router schema -o rules/rule.schema.json`"
    )


def test_samples_are_json() -> None:
    names = sorted(p.name for p in SAMPLES.glob("*.json"))
    assert names == ["form-signup.json", "github-push.json", "stripe-payment_intent.succeeded.json"]
    for name in names:
        sample(name)


# -- signatures and dedupe of the samples -------------------------------------------------------


def test_readme_openssl_signature_verifies(ruleset: RuleSet) -> None:
    """The README's curl: HMAC-SHA256 of the file's bytes with dev-github-secret, as sha256=<hex>."""
    raw = (SAMPLES / "github-push.json").read_bytes()
    signature = github_signature(raw, "dev-github-secret")
    cfg = ruleset.sources["github"].verify
    assert cfg is not None
    verify(cfg, raw, {"x-hub-signature-256": signature}, {})


@pytest.mark.parametrize(
    ("source", "name"),
    [("github", "github-push.json"), ("stripe", "stripe-payment_intent.succeeded.json"), ("forms", "form-signup.json")],
)
def test_router_send_signature_verifies(ruleset: RuleSet, source: str, name: str) -> None:
    raw = (SAMPLES / name).read_bytes()
    cfg = ruleset.sources[source].verify
    assert cfg is not None
    headers, query = sign(cfg, raw)
    verify(cfg, raw, {k.lower(): v for k, v in headers.items()}, query)


def test_forms_token_works_in_header_and_query(ruleset: RuleSet) -> None:
    cfg = ruleset.sources["forms"].verify
    assert cfg is not None
    assert cfg.header == "x-form-token"
    verify(cfg, b"{}", {"x-form-token": "dev-forms-token"}, {})
    verify(cfg, b"form=signup", {}, {"token": "dev-forms-token"})


def test_dedupe_keys(ruleset: RuleSet) -> None:
    stripe = event("stripe", sample("stripe-payment_intent.succeeded.json"))
    assert dedupe_key(ruleset.sources["stripe"], stripe) == "evt_3QGdWzKZ8bLq1xYv0m2nRt7A"
    github = event("github", sample("github-push.json"), {"x-github-delivery": "72d3162e"})
    assert dedupe_key(ruleset.sources["github"], github) == "72d3162e"
    assert ruleset.sources["forms"].dedupe is None


# -- github.yaml ---------------------------------------------------------------------------------------


def test_github_push_renders_the_slack_message(ruleset: RuleSet) -> None:
    ev = event("github", sample("github-push.json"), {"x-github-event": "push"})
    result = run(ruleset, "github-push-to-slack", ev)
    assert result["matched"] is True
    notify = step(result, "notify")
    assert notify["rendered"] is True, notify["error"]
    assert notify["with"] == {"url": f"{INBOX}/slack", "text": GITHUB_TEXT}


def test_github_slack_url_comes_from_the_secret(ruleset: RuleSet) -> None:
    url = "https://hooks.slack.com/services/T0/B0/XXXX"
    ev = event("github", sample("github-push.json"), {"x-github-event": "push"})
    result = run(ruleset, "github-push-to-slack", ev, secrets={"SLACK_WEBHOOK_URL": url})
    assert step(result, "notify")["with"]["url"] == "[secret:SLACK_WEBHOOK_URL]"  # masked where shown
    notify = ruleset.rules["github-push-to-slack"].steps[0]
    rendered = render_step(notify, build_context(ev, {"SLACK_WEBHOOK_URL": url}))
    assert rendered.config is not None
    assert rendered.config.url == url  # sent for real


@pytest.mark.parametrize(
    ("headers", "change"),
    [
        ({}, {}),  # no X-GitHub-Event header
        ({"x-github-event": "pull_request"}, {}),
        ({"x-github-event": "push"}, {"ref": "refs/heads/feature"}),
        ({"x-github-event": "push"}, {"ref": "refs/tags/v1.0.0"}),
    ],
)
def test_github_other_events_do_not_match(ruleset: RuleSet, headers: dict[str, str], change: dict[str, Any]) -> None:
    body = sample("github-push.json") | change
    assert run(ruleset, "github-push-to-slack", event("github", body, headers))["matched"] is False


# -- stripe.yaml ---------------------------------------------------------------------------------------


def stripe_event(**changes: Any) -> dict[str, Any]:
    body = sample("stripe-payment_intent.succeeded.json")
    body["data"]["object"].update(changes.pop("object", {}))
    body.update(changes)
    return event("stripe", body)


def test_stripe_order_step_renders(ruleset: RuleSet) -> None:
    result = run(ruleset, "stripe-paid-order-to-shipping", stripe_event())
    assert result["matched"] is True
    order = step(result, "order")
    assert order["rendered"] is True, order["error"]
    assert order["with"] == {
        "method": "GET",
        "url": f"{INBOX}/orders-api",
        "query": {"id": "ord_1042"},
        "headers": {"authorization": "Bearer dev-token", "accept": "application/json"},
        "timeout": 10,
        "success": [200],
    }
    ship = step(result, "ship")
    assert ship["rendered"] is False
    assert "reads steps.order" in ship["error"]


def test_stripe_ship_step_renders_against_the_inbox_answer(ruleset: RuleSet) -> None:
    """The built-in inbox answers {"id", "name"}: every other order field falls back to the event."""
    inbox_answer = {"status": 200, "headers": {}, "body": {"id": "01JINBOX000000000000000000", "name": "orders-api"}}
    result = run(ruleset, "stripe-paid-order-to-shipping", stripe_event(), {"order": inbox_answer})
    ship = step(result, "ship")
    assert ship["rendered"] is True, ship["error"]
    assert ship["with"] == {
        "url": f"{INBOX}/shipping",
        "json": {
            "order_id": "ord_1042",
            "order_ref": "01JINBOX000000000000000000",
            "payment_intent": "pi_3QGdWzKZ8bLq1xYv0T4kHc9E",
            "amount": 12900,
            "total": "129.00 USD",
            "email": "jenny.rosen@example.com",
            "ship_to": SHIP_TO,
            "line_items": [],
            "paid_at": 1764065700,
        },
    }


def test_stripe_ship_step_prefers_the_order_api_fields(ruleset: RuleSet) -> None:
    order = {
        "id": "ord_1042",
        "email": "buyer@example.com",
        "shipping_address": {"name": "Buyer", "line1": "1 Main St", "country": "US"},
        "line_items": [{"sku": "MUG-1", "quantity": 2}],
        "items": "a key named like a dict method must not break anything",
    }
    outputs = {"order": {"status": 200, "headers": {"content-type": "application/json"}, "body": order}}
    secrets = {"ORDERS_API_URL": "https://shop.example.com/api/orders", "SHIPPING_WEBHOOK_URL": "https://ship.example"}
    result = run(ruleset, "stripe-paid-order-to-shipping", stripe_event(), outputs, secrets)
    assert step(result, "order")["with"]["url"] == "[secret:ORDERS_API_URL]"
    ship = step(result, "ship")["with"]
    assert ship["url"] == "[secret:SHIPPING_WEBHOOK_URL]"
    assert ship["json"]["order_ref"] == "ord_1042"
    assert ship["json"]["email"] == "buyer@example.com"
    assert ship["json"]["ship_to"] == order["shipping_address"]
    assert ship["json"]["line_items"] == [{"sku": "MUG-1", "quantity": 2}]


@pytest.mark.parametrize(
    "changes",
    [
        {"object": {"amount": 10000}},  # exactly 100 USD is not "over 100"
        {"object": {"amount": 9900}},
        {"object": {"currency": "eur"}},
        {"type": "payment_intent.payment_failed"},
    ],
    ids=["100-usd", "99-usd", "eur", "failed"],
)
def test_stripe_other_payments_do_not_match(ruleset: RuleSet, changes: dict[str, Any]) -> None:
    result = run(ruleset, "stripe-paid-order-to-shipping", stripe_event(**copy.deepcopy(changes)))
    assert result["matched"] is False


# -- forms.yaml ----------------------------------------------------------------------------------------


def test_forms_signup_renders_slack_and_email(ruleset: RuleSet) -> None:
    result = run(ruleset, "forms-signup-welcome", event("forms", sample("form-signup.json")))
    assert result["matched"] is True
    tell = step(result, "tell-team")
    assert tell["rendered"] is True, tell["error"]
    assert tell["with"] == {
        "url": f"{INBOX}/slack",
        "text": ":tada: New signup: Ada Lovelace <ada@example.com>, Analytical Engines Ltd, plan team",
        "username": "Signup bot",
        "icon_emoji": ":tada:",
    }
    welcome = step(result, "welcome")
    assert welcome["rendered"] is True, welcome["error"]
    assert welcome["with"] == {
        "to": "ada@example.com",
        "from": "Acme Team <hello@example.com>",
        "reply_to": "support@example.com",
        "subject": "Welcome to Acme, Ada Lovelace!",
        "text": (
            "Hi Ada Lovelace,\n\n"
            "thanks for signing up for Analytical Engines Ltd.\n"
            "Your team plan is ready: https://app.example.com/start\n\n"
            "Reply to this email if you need anything.\n"
            "— The Acme team\n"
        ),
    }


def test_forms_minimal_form_post_skips_the_email(ruleset: RuleSet) -> None:
    """A classic HTML form post: flat string fields, no email address."""
    form = {"content-type": "application/x-www-form-urlencoded"}
    result = run(ruleset, "forms-signup-welcome", event("forms", {"form": "signup", "name": "Grace Hopper"}, form))
    text = step(result, "tell-team")["with"]["text"]
    assert text == ":tada: New signup: Grace Hopper <no email>, no company, plan free"
    assert step(result, "welcome")["skipped"] is True


def test_forms_other_forms_do_not_match(ruleset: RuleSet) -> None:
    body = sample("form-signup.json") | {"form": "contact"}
    assert run(ruleset, "forms-signup-welcome", event("forms", body))["matched"] is False
