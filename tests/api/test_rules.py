"""``/api/rules`` and the side-effect-free dry run."""

from __future__ import annotations

from typing import Any

from pytest_httpserver import HTTPServer

from tests.conftest import RouterFactory

RULES = {
    "shop.yaml": """
    sources:
      - id: shop
    rules:
      - id: big-order
        source: shop
        description: Orders over 100 fetch the customer, then notify.
        filter: body.total > `100`
        steps:
          - id: customer
            action: http
            with:
              method: GET
              url: "https://api.example.test/customers/{{ body.customer_id }}"
          - id: notify
            action: http
            when: steps.customer.body.vip
            with:
              url: https://hooks.example.test/vip
              json:
                total: "{{ body.total }}"
                name: "{{ steps.customer.body.name }}"
                token: "{{ secrets.API_TOKEN }}"
    """
}
ENV = {"ROUTER_SECRET_API_TOKEN": "tok-123456"}


async def dry(r: Any, payload: dict[str, Any]) -> Any:
    return await r.client.post("/api/rules/dry-run", json=payload)


async def test_rules_are_listed_with_their_location(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False, env=ENV) as r:
        body = (await r.client.get("/api/rules")).json()
    (rule,) = body["rules"]
    assert rule["id"] == "big-order"
    assert rule["location"].endswith("shop.yaml:4:5")
    assert rule["filter"] == "body.total > `100`"
    assert [s["id"] for s in rule["steps"]] == ["customer", "notify"]
    assert body["sources"][0] == {
        "id": "shop",
        "description": "",
        "url": "/hooks/shop",
        "verify": "none",
        "dedupe": None,
        "preset": None,
        "event_type": None,
        "location": body["sources"][0]["location"],
    }
    assert body["errors"] == []


async def test_dry_run_reports_steps_that_need_earlier_outputs(router_factory: RouterFactory) -> None:
    event = {"body": {"total": 150, "customer_id": 7}, "headers": {"X-Shop": "eu"}}
    async with router_factory(RULES, worker=False, env=ENV) as r:
        without = (await dry(r, {"rule_id": "big-order", "event": event})).json()
        with_outputs = (
            await dry(
                r,
                {
                    "rule_id": "big-order",
                    "event": event,
                    "step_outputs": {"customer": {"status": 200, "headers": {}, "body": {"vip": True, "name": "Ada"}}},
                },
            )
        ).json()
        not_vip = (
            await dry(
                r,
                {
                    "rule_id": "big-order",
                    "event": event,
                    "step_outputs": {"customer": {"status": 200, "headers": {}, "body": {"vip": False}}},
                },
            )
        ).json()
        small = (await dry(r, {"rule_id": "big-order", "event": {"body": {"total": 5, "customer_id": 1}}})).json()
    assert without["matched"] is True
    first, second = without["steps"]
    assert first == {
        "id": "customer",
        "action": "http",
        "skipped": False,
        "rendered": True,
        "with": {"method": "GET", "url": "https://api.example.test/customers/7"},
        "error": None,
    }
    assert second["rendered"] is False
    assert second["with"] is None
    assert second["error"].startswith("not rendered: reads steps.customer")
    rendered = with_outputs["steps"][1]
    assert rendered["rendered"] is True
    assert rendered["with"]["json"] == {"total": 150, "name": "Ada", "token": "[secret:API_TOKEN]"}
    assert not_vip["steps"][1]["skipped"] is True
    assert small["matched"] is False


async def test_dry_run_with_an_inline_rule_and_a_stored_event(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    inline = {
        "id": "draft",
        "source": "shop",
        "filter": "headers.\"x-shop\" == 'eu'",
        "steps": [{"id": "ping", "action": "slack", "with": {"url": httpserver.url_for("/s"), "text": "{{ body.n }}"}}],
    }
    async with router_factory(RULES, worker=False, env=ENV) as r:
        stored = await r.hook("shop", {"n": 3, "total": 1}, headers={"x-shop": "eu"})
        result = (await dry(r, {"rule": inline, "event_id": stored.json()["event_id"]})).json()
        bad = await dry(r, {"rule": inline | {"filter": "body..x"}, "event": {"body": {}}})
        unknown = await dry(r, {"rule_id": "nope", "event": {"body": {}}})
        missing = await dry(r, {"rule_id": "big-order"})
    assert result["matched"] is True
    assert result["steps"][0]["with"] == {"url": httpserver.url_for("/s"), "text": 3}
    assert result["steps"][0]["error"] is None  # a number renders into a text field
    assert httpserver.log == []  # a dry run sends nothing
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["path"] == "filter"
    assert bad.json()["errors"][0]["message"].startswith("invalid JMESPath")
    assert unknown.status_code == 404
    assert missing.status_code == 400
    assert "give `event_id` or `event`" in missing.json()["detail"]


async def test_dry_run_shows_render_errors_at_the_step(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False, env=ENV) as r:
        result = (await dry(r, {"rule_id": "big-order", "event": {"body": {"total": 500}}})).json()
    error = result["steps"][0]["error"]
    assert "customer_id" in error
    assert error.startswith("shop.yaml") or "shop.yaml" in error
    assert result["steps"][0]["rendered"] is False
