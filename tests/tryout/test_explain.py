"""Explain: why a rule matched an event or not, operand by operand, and what each step rendered."""

from __future__ import annotations

from typing import Any

import jmespath
import pytest
from pytest_httpserver import HTTPServer

from router.pipeline.match import build_context, event_dict
from router.tryout.explain import explain_tree, expression_text
from tests.conftest import RouterFactory

ROUND_TRIP = [
    "a && b && c",
    "a && (b && c)",
    "(a || b) && c",
    "a || b && c",
    "!a.b",
    "!(a.b)",
    "!a[*].b",
    "!(a == b) || !!c",
    "a | b | c",
    "a | (b | c)",
    "a.b[*].c == `[1]`",
    "a[?b == `1`].c[0]",
    "a[?@ > `2`] | [0]",
    "foo[?a == `1`][?b]",
    "a[].b[]",
    "a[1:2].b",
    "a[::-1]",
    "a.b[0][1]",
    "(a.b)[0]",
    "(a[*].b)[0]",
    "a.*.b",
    "*.a",
    "a.[b, c]",
    '{x: a, "y-z": b}.x',
    "sort_by(a, &b)[0].c",
    "max_by(a, &to_number(b)).c",
    "(a || b).c",
    "'it\\'s' == a",
    '`{"k": [1, null]}` == a',
    "headers.\"x-github-event\" == 'push' && body.ref == join('', ['refs/heads/', body.repository.default_branch])",
]


@pytest.mark.parametrize("source", ROUND_TRIP)
def test_printed_expressions_parse_back_to_the_same_tree(source: str) -> None:
    parsed = jmespath.compile(source).parsed
    assert jmespath.compile(expression_text(parsed)).parsed == parsed


def test_tree_shows_every_operand_and_what_short_circuits() -> None:
    event = event_dict(id="e", source="s", received_at="2026-01-01T00:00:00+00:00", body={"total": 50, "cur": "usd"})
    ctx = build_context(event, {"TOKEN": "sekrit-token"})
    parsed = jmespath.compile("body.total > `100` && body.cur == 'usd' || !(body.test) || secrets.TOKEN").parsed
    tree = explain_tree(parsed, ctx, {"TOKEN": "sekrit-token"})
    assert tree["expression"] == "body.total > `100` && body.cur == 'usd' || !(body.test) || secrets.TOKEN"
    assert (tree["value"], tree["truthy"]) == (True, True)
    left, token = tree["children"]
    assert token == {
        "expression": "secrets.TOKEN",
        "type": "subexpression",
        "value": "[secret:TOKEN]",  # redacted
        "truthy": True,
        "children": [],
        "reached": False,  # the left side of || was already truthy
    }
    and_part, not_part = left["children"]
    assert and_part["expression"] == "body.total > `100` && body.cur == 'usd'"
    assert and_part["truthy"] is False
    total, currency = and_part["children"]
    assert (total["expression"], total["value"], total["operator"]) == ("body.total > `100`", False, ">")
    assert [c["value"] for c in total["children"]] == [50, 100]
    assert currency["reached"] is False
    assert currency["value"] is True
    assert (not_part["expression"], not_part["value"]) == ("!(body.test)", True)
    assert not_part["children"][0] == {
        "expression": "body.test",
        "type": "subexpression",
        "value": None,
        "truthy": False,
        "children": [],
    }


def test_the_not_trap_is_visible() -> None:
    """``!body.test`` is ``(!body).test``: JMESPath's ``!`` binds tighter than ``.``; the printed text shows it."""
    ctx = build_context(event_dict(id="e", source="s", received_at="x", body={"test": False}), {})
    tree = explain_tree(jmespath.compile("!body.test").parsed, ctx, {})
    assert (tree["expression"], tree["value"], tree["truthy"]) == ("(!body).test", None, False)


def test_operands_that_fail_carry_their_error() -> None:
    ctx = build_context(event_dict(id="e", source="s", received_at="x", body={"n": "7"}), {})
    tree = explain_tree(jmespath.compile("body.n && abs(body.n) > `1`").parsed, ctx, {})
    failing = tree["children"][1]
    assert "error" in failing
    assert "abs" in failing["error"]


RULES = {
    "shop.yaml": """
    sources:
      - id: shop
      - id: other
    rules:
      - id: big-order
        source: shop
        filter: body.total > `100` && (body.currency == 'usd' || !(body.test))
        steps:
          - id: customer
            action: http
            with:
              method: GET
              url: "{{ secrets.CRM_URL }}/customers/{{ body.customer }}"
              headers:
                authorization: "Bearer {{ secrets.CRM_TOKEN }}"
          - id: notify
            action: http
            when: steps.customer.body.vip && body.total > `200`
            with:
              url: "{{ secrets.CRM_URL }}/notify"
              json:
                text: "{{ steps.customer.body.name }} spent {{ body.total }}"
          - id: broken
            action: http
            with:
              url: "{{ body.missing.deeper }}"
    """
}


async def explain(r: Any, event_id: str, rule: str | None = "big-order") -> Any:
    params = {"rule": rule} if rule is not None else {}
    return await r.client.get(f"/api/events/{event_id}/explain", params=params)


async def test_explain_a_stored_event_with_its_recorded_run(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/customers/c1").respond_with_json({"vip": True, "name": "Ada"})
    httpserver.expect_request("/notify").respond_with_json({"ok": True})
    env = {"ROUTER_SECRET_CRM_URL": httpserver.url_for("").rstrip("/"), "ROUTER_SECRET_CRM_TOKEN": "crm-token-1"}
    async with router_factory(RULES, env=env) as r:
        big = (await r.hook("shop", {"total": 300, "currency": "eur", "customer": "c1"})).json()["event_id"]
        small = (await r.hook("shop", {"total": 20, "currency": "usd", "customer": "c2"})).json()["event_id"]
        elsewhere = (await r.hook("other", {"total": 300, "currency": "usd", "customer": "c3"})).json()["event_id"]
        for event_id in (big, small, elsewhere):
            await r.wait_event(event_id)
        sent = len(httpserver.log)
        hit = await explain(r, big)
        miss = (await explain(r, small)).json()
        wrong_source = (await explain(r, elsewhere)).json()
        no_event = await explain(r, "NOPE")
        no_rule = await explain(r, big, "nope")
        no_param = await explain(r, big, None)
        assert len(httpserver.log) == sent  # explaining sends nothing
    assert hit.status_code == 200, hit.text
    result = hit.json()
    assert (result["event_id"], result["rule_id"], result["matched"]) == (big, "big-order", True)
    assert result["rule_location"].endswith("shop.yaml:5:5")
    assert result["reason"] == "the filter holds"
    tree = result["filter"]
    assert tree["expression"] == "body.total > `100` && (body.currency == 'usd' || !(body.test))"
    total, either = tree["children"]
    assert (total["value"], either["value"]) == (True, True)
    currency, not_test = either["children"]
    assert (currency["expression"], currency["value"]) == ("body.currency == 'usd'", False)
    assert (not_test["expression"], not_test["value"], not_test["children"][0]["value"]) == ("!(body.test)", True, None)
    customer, notify, broken = result["steps"]
    base = httpserver.url_for("").rstrip("/")
    assert customer["with"] == {
        "method": "GET",
        "url": "[secret:CRM_URL]/customers/c1",
        "headers": {"authorization": "Bearer [secret:CRM_TOKEN]"},
    }
    assert base not in str(customer)
    assert customer["when"] is None
    # `notify` reads steps.customer: the run's recorded output is used, so `when` is true and it renders.
    assert notify["when"]["value"] is True
    assert [c["expression"] for c in notify["when"]["children"]] == ["steps.customer.body.vip", "body.total > `200`"]
    assert notify["with"]["json"] == {"text": "Ada spent 300"}
    assert broken["rendered"] is False
    assert "missing" in broken["error"]
    assert result["current"]["status"] == "failed"  # the real run failed at `broken`
    assert [s["status"] for s in result["current"]["steps"]] == ["succeeded", "succeeded", "failed"]

    assert miss["matched"] is False
    assert (
        miss["reason"]
        == "the filter gives false, which counts as no (false, null, empty text, an empty list or object)"
    )
    assert miss["filter"]["children"][0]["value"] is False
    assert miss["current"] is None
    assert miss["steps"][1]["error"].startswith("not rendered: reads steps.customer")

    assert wrong_source["matched"] is False
    assert wrong_source["filter"]["value"] is True
    assert "came in on source 'other'" in wrong_source["reason"]

    assert no_event.status_code == 404
    assert no_event.json() == {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no event 'NOPE'"}
    assert no_rule.status_code == 404
    assert no_rule.json()["detail"] == "no loaded rule 'nope'"
    assert no_param.status_code == 400
    assert no_param.headers["content-type"].startswith("application/problem+json")


async def test_explain_a_filter_that_fails_and_a_rule_without_filter(router_factory: RouterFactory) -> None:
    files = {
        "r.yaml": """
        sources: [{id: s}]
        rules:
          - id: typed
            source: s
            filter: abs(body.n) > `1`
            steps: [{id: e, action: emit, with: {source: s, body: {}}}]
          - id: all
            source: s
            enabled: false
            steps: [{id: e, action: emit, with: {source: s, body: {}}}]
        """
    }
    async with router_factory(files, worker=False) as r:
        event_id = (await r.hook("s", {"n": "seven"})).json()["event_id"]
        typed = (await explain(r, event_id, "typed")).json()
        every = (await explain(r, event_id, "all")).json()
    assert typed["matched"] is False
    assert "abs" in typed["filter_error"]
    assert typed["reason"].startswith("the filter failed to evaluate: ")
    assert "error" in typed["filter"]
    assert every["filter"] is None
    assert every["matched"] is False
    assert every["reason"] == "the rule is disabled (enabled: false)"
