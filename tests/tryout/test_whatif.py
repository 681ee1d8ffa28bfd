"""What-if replay: a draft rule against the last stored events, beside what the current rule did; no side effects."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pytest_httpserver import HTTPServer

from router.cli.commands import main
from tests.conftest import RouterFactory


def rules(url: str) -> dict[str, str]:
    return {
        "shop.yaml": f"""
        sources:
          - id: shop
          - id: other
        rules:
          - id: big-order
            source: shop
            filter: body.total > `100`
            steps:
              - id: customer
                action: http
                with:
                  method: GET
                  url: "{url}/customers/{{{{ body.customer }}}}"
              - id: notify
                action: http
                when: steps.customer.body.vip
                with:
                  url: "{url}/notify"
                  json:
                    total: "{{{{ body.total }}}}"
                    name: "{{{{ steps.customer.body.name }}}}"
                    token: "{{{{ secrets.API_TOKEN }}}}"
        """
    }


ENV = {"ROUTER_SECRET_API_TOKEN": "tok-123456"}


def draft(url: str, threshold: int = 200) -> dict[str, Any]:
    """The edited rule: a higher threshold, and the message says more."""
    return {
        "id": "big-order",
        "source": "shop",
        "filter": f"body.total > `{threshold}`",
        "steps": [
            {
                "id": "customer",
                "action": "http",
                "with": {"method": "GET", "url": f"{url}/customers/{{{{ body.customer }}}}"},
            },
            {
                "id": "notify",
                "action": "http",
                "when": "steps.customer.body.vip",
                "with": {
                    "url": f"{url}/notify",
                    "json": {"text": "{{ steps.customer.body.name }} spent {{ body.total }}"},
                },
            },
        ],
    }


async def store_traffic(r: Any) -> list[str]:
    """Three orders (50, 150, 300) that the current rule handled, and one on another source."""
    ids = []
    for n, total in enumerate((50, 150, 300)):
        ids.append((await r.hook("shop", {"total": total, "customer": f"c{n}"})).json()["event_id"])
        await r.wait_event(ids[-1])
    other = (await r.hook("other", {"total": 1000, "customer": "x"})).json()["event_id"]
    await r.wait_event(other)  # all quiet: the worker logs nothing into the commands' output
    return ids


@pytest.mark.postgres
async def test_what_if_compares_a_draft_with_what_the_current_rule_did(
    router_factory: RouterFactory, httpserver: HTTPServer, database_url: str
) -> None:
    httpserver.expect_request("/customers/c1").respond_with_json({"vip": True, "name": "Ada"})
    httpserver.expect_request("/customers/c2").respond_with_json({"vip": True, "name": "Grace"})
    httpserver.expect_request("/notify").respond_with_json({"ok": True})
    base = httpserver.url_for("").rstrip("/")
    async with router_factory(rules(base), env=ENV, database_url=database_url) as r:
        small, medium, large = await store_traffic(r)
        sent_before = len(httpserver.log)
        response = await r.client.post("/api/rules/what-if", json={"rule": draft(base)})
        by_id = await r.client.post("/api/rules/what-if", json={"rule_id": "big-order", "last": 2})
        await asyncio.sleep(0.2)
        sent_after = len(httpserver.log)
        events_after = (await r.client.get("/api/events", params={"source": "shop"})).json()["events"]
    assert response.status_code == 200, response.text
    result = response.json()
    assert sent_after == sent_before  # nothing was sent
    assert len(events_after) == 3  # nothing was stored
    assert {k: result[k] for k in ("source", "last", "evaluated", "matched", "current_matched")} == {
        "source": "shop",
        "last": 100,
        "evaluated": 3,
        "matched": 1,
        "current_matched": 2,
    }
    assert result["newly_matched"] == 0
    assert result["no_longer_matched"] == 1
    assert result["complete"] is True
    # The sample: events either side matched, newest first; the 50 order concerns neither.
    assert [s["event_id"] for s in result["sample"]] == [large, medium]
    now, dropped = result["sample"]
    assert now["matched"] is True
    assert now["steps"][0]["with"] == {"method": "GET", "url": f"{base}/customers/c2"}
    # steps.customer comes from the output the current run recorded, so `notify` renders too.
    assert now["steps"][1]["rendered"] is True
    assert now["steps"][1]["with"]["json"] == {"text": "Grace spent 300"}
    current = now["current"]
    assert current["status"] == "succeeded"
    assert [(s["id"], s["status"]) for s in current["steps"]] == [("customer", "succeeded"), ("notify", "succeeded")]
    assert current["steps"][1]["rendered"]["json"] == {"total": 300, "name": "Grace", "token": "[secret:API_TOKEN]"}
    assert dropped["matched"] is False
    assert dropped["current"]["status"] == "succeeded"
    assert small not in [s["event_id"] for s in result["sample"]]
    # The loaded rule by id, on the two newest events: the same as what ran.
    again = by_id.json()
    assert (again["evaluated"], again["matched"], again["current_matched"]) == (2, 2, 2)
    assert again["sample"][0]["steps"][1]["with"]["json"]["token"] == "[secret:API_TOKEN]"


async def test_what_if_on_another_source_and_bad_requests(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    base = httpserver.url_for("").rstrip("/")
    async with router_factory(rules(base), env=ENV, worker=False) as r:
        await r.hook("other", {"total": 1000, "customer": "x"})
        other = (await r.client.post("/api/rules/what-if", json={"rule": draft(base), "source": "other"})).json()
        bad = {
            "no rule": {"last": 5},
            "last zero": {"rule_id": "big-order", "last": 0},
            "last too big": {"rule_id": "big-order", "last": 1001},
            "last text": {"rule_id": "big-order", "last": "10"},
            "last bool": {"rule_id": "big-order", "last": True},
            "source": {"rule_id": "big-order", "source": 3},
            "rule": {"rule": draft(base) | {"filter": "body.total >"}},
        }
        answers = {name: await r.client.post("/api/rules/what-if", json=body) for name, body in bad.items()}
        unknown = await r.client.post("/api/rules/what-if", json={"rule_id": "nope"})
    assert (other["source"], other["evaluated"], other["matched"], other["current_matched"]) == ("other", 1, 1, 0)
    assert other["newly_matched"] == 1
    assert other["sample"][0]["current"] is None
    for name, answer in answers.items():
        assert answer.status_code == 400, name
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert "from 1 to 1000" in answers["last too big"].json()["detail"]
    assert answers["rule"].json()["errors"][0]["path"] == "filter"
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "no loaded rule 'nope'"


async def cli(args: list[str]) -> Result:
    """The command in a thread: it runs its own event loop, as it does from a shell."""
    return await asyncio.to_thread(CliRunner().invoke, main, args)


async def test_what_if_command(
    router_factory: RouterFactory, httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpserver.expect_request("/customers/c1").respond_with_json({"vip": False})
    httpserver.expect_request("/customers/c2").respond_with_json({"vip": True, "name": "Grace"})
    httpserver.expect_request("/notify").respond_with_json({"ok": True})
    base = httpserver.url_for("").rstrip("/")
    one = tmp_path / "draft.yaml"
    one.write_text(
        "id: big-order\nsource: shop\nfilter: body.total > `200`\nsteps:\n"
        f"  - id: notify\n    action: http\n    with:\n      url: {base}/notify\n"
        "      json: {total: '{{ body.total }}', token: '{{ secrets.API_TOKEN }}'}\n"
    )
    two = tmp_path / "two.yaml"
    two.write_text(
        "sources:\n  - id: extra\nrules:\n"
        f"  - id: a\n    source: shop\n    steps: [{{id: s, action: http, with: {{url: {base}/a}}}}]\n"
        f"  - id: b\n    source: extra\n    steps: [{{id: s, action: http, with: {{url: {base}/b}}}}]\n"
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: big-order\nsource: shop\nfilter: body.total >\nsteps:\n  - id: n\n    action: nope\n")
    async with router_factory(rules(base), env=ENV) as r:
        for key in ("database_url", "rules_dir"):
            monkeypatch.setenv(f"ROUTER_{key.upper()}", str(getattr(r.settings, key)))
        await store_traffic(r)
        sent = len(httpserver.log)
        as_json = await cli(["what-if", str(one), "--last", "10", "--format", "json"])
        text = await cli(["what-if", str(one)])
        several = await cli(["what-if", str(two)])
        picked = await cli(["what-if", str(two), "--rule", "b", "--format", "json"])
        missing = await cli(["what-if", str(two), "--rule", "zz"])
        bad = await cli(["what-if", str(broken)])
        too_many = await cli(["what-if", str(one), "--last", "1001"])
        assert len(httpserver.log) == sent
    assert as_json.exit_code == 0, as_json.output
    result = json.loads(as_json.stdout)
    assert (result["evaluated"], result["matched"], result["current_matched"]) == (3, 1, 2)
    assert result["rule_location"].endswith("draft.yaml:1:1")
    (hit,) = [s for s in result["sample"] if s["matched"]]
    assert hit["steps"][0]["with"]["json"] == {"total": 300, "token": "[secret:API_TOKEN]"}
    assert text.exit_code == 0, text.output
    assert "rule 'big-order' on the last 3 event(s) of source 'shop'" in text.stdout
    assert "would match:        1" in text.stdout
    assert "no longer matched:  1" in text.stdout
    assert "step notify (http): would send" in text.stdout
    assert several.exit_code == 1
    assert "has 2 rules (a, b); pick one with --rule ID" in several.output
    assert picked.exit_code == 0, picked.output
    assert json.loads(picked.stdout)["source"] == "extra"  # a source the draft file defines
    assert json.loads(picked.stdout)["evaluated"] == 0
    assert missing.exit_code == 1
    assert "has no rule 'zz'" in missing.output
    assert bad.exit_code == 1
    assert "broken.yaml:3:9: filter: invalid JMESPath" in bad.output
    assert "broken.yaml:6:13: steps[0].action: unknown action 'nope'" in bad.output
    assert too_many.exit_code == 2


async def test_what_if_command_reports_an_unreadable_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rule = tmp_path / "r.yaml"
    rule.write_text(
        "sources: [{id: s}]\nrules: [{id: r, source: s, steps: [{id: x, action: emit, with: {source: s}}]}]\n"
    )
    monkeypatch.setenv("ROUTER_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.setenv("ROUTER_RULES_DIR", str(tmp_path / "none"))
    result = await cli(["what-if", str(rule)])
    assert result.exit_code == 1
    assert "does not load" in result.output  # the missing rules folder is a warning, not the end
    assert "cannot read the stored events (ROUTER_DATABASE_URL): " in result.output
