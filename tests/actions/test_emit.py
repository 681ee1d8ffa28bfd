"""The ``emit`` action: a new event into another source, chained, depth-limited and deduplicated."""

from __future__ import annotations

import asyncio
import itertools
import json
from functools import partial
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select

from router.records import db
from router.records.models import Event, RunStep
from router.rules.holder import RulesHolder
from router.rules.ruleset import load_ruleset
from router.worker import close_state, create_state
from tests.conftest import Router, RouterFactory, eventually


def rule_files(sources: tuple[str, ...], *rules: dict[str, Any]) -> dict[str, str]:
    return {"rules.yaml": json.dumps({"sources": [{"id": s} for s in sources], "rules": list(rules)}, indent=2)}


def emit_rule(target: str = "audit", source: str = "orders") -> dict[str, Any]:
    settings = {
        "source": target,
        "body": {"order": "{{ body.id }}", "amount": "{{ body.amount }}", "lines": "{{ body.lines }}"},
        "headers": {"X-Origin": "{{ event.source }}", "X-Amount": "{{ body.amount }}"},
    }
    return {"id": "fan-out", "source": source, "steps": [{"id": "forward", "action": "emit", "with": settings}]}


ORDER: dict[str, Any] = {"id": "ord_7", "amount": 15000, "lines": [{"sku": "A", "qty": 2}]}
CHILD_BODY: dict[str, Any] = {"order": "ord_7", "amount": 15000, "lines": [{"sku": "A", "qty": 2}]}


async def post(r: Router, source: str, body: Any) -> dict[str, Any]:
    response = await r.hook(source, body)
    assert response.status_code == 202, response.text
    event: dict[str, Any] = await r.wait_event(response.json()["event_id"])
    return event


async def emit_step_row_id(database_url: str, event_id: str) -> str:
    engine = db.create_engine(database_url)
    try:
        async with db.sessionmaker(engine)() as session:
            row = (
                await session.scalars(select(RunStep).where(RunStep.idempotency_key == f"{event_id}:fan-out:forward"))
            ).one()
            return row.id
    finally:
        await engine.dispose()


async def test_emit_routes_a_new_event_through_the_target_source(
    router_factory: RouterFactory, httpserver: HTTPServer, database_url: str
) -> None:
    httpserver.expect_request("/audit", method="POST").respond_with_data("ok")
    audit = {
        "id": "audit-log",
        "source": "audit",
        "filter": "body.amount > `10000`",
        "steps": [
            {
                "id": "store",
                "action": "http",
                "with": {
                    "url": httpserver.url_for("/audit"),
                    "headers": {"X-Origin": "{{ headers['x-origin'] }}"},
                    "json": {"event": "{{ body }}", "method": "{{ event.method }}"},
                },
            }
        ],
    }
    files = rule_files(("orders", "audit"), emit_rule(), audit)
    async with router_factory(files, database_url=database_url) as r:
        parent = await post(r, "orders", ORDER)
        (step,) = parent["runs"][0]["steps"]
        child_id = step["output"]["body"]["event_id"]
        child = await r.wait_event(child_id)
        listing = (await r.client.get("/api/events", params={"source": "audit"})).json()
    assert (parent["status"], step["status"], step["error"]) == ("succeeded", "succeeded", None)
    assert step["output"] == {"status": 202, "headers": {}, "body": {"event_id": child_id, "source": "audit"}}
    assert step["rendered"]["body"] == CHILD_BODY
    assert step["attempts"][0]["request"] == {
        "source": "audit",
        "headers": {"X-Origin": "orders", "X-Amount": "15000"},
    }
    assert [e["id"] for e in listing["events"]] == [child_id]
    assert child["source"] == "audit"
    assert (child["chain_depth"], child["method"], child["path"]) == (1, "EMIT", "/hooks/audit")
    assert child["body"] == CHILD_BODY
    assert child["headers"] == {"x-origin": "orders", "x-amount": "15000"}
    assert child["dedupe_key"] == f"emit:{parent['id']}:fan-out:forward"
    assert child["parent_step_id"] == await emit_step_row_id(database_url, parent["id"])
    assert child["status"] == "succeeded"
    assert child["runs"][0]["rule_id"] == "audit-log"
    ((request, _),) = httpserver.log
    assert request.get_json() == {"event": CHILD_BODY, "method": "EMIT"}
    assert request.headers["X-Origin"] == "orders"
    assert request.headers["Idempotency-Key"] == f"{child_id}:audit-log:store"


async def count_events(r: Router) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = (await r.client.get("/api/events", params={"limit": 100})).json()["events"]
    return events


@pytest.mark.parametrize("limit", [None, 2])
async def test_self_emit_stops_at_the_depth_limit(
    router_factory: RouterFactory, database_url: str, limit: int | None
) -> None:
    loop = {
        "id": "again",
        "source": "loop",
        "steps": [{"id": "emit", "action": "emit", "with": {"source": "loop", "body": {"n": "{{ body.n + 1 }}"}}}],
    }
    depth = limit or 5  # ROUTER_MAX_EMIT_DEPTH's default
    overrides = {"max_emit_depth": limit} if limit else {}
    async with router_factory(rule_files(("loop",), loop), database_url=database_url, **overrides) as r:
        first = await post(r, "loop", {"n": 0})

        async def all_done() -> bool:
            events = await count_events(r)
            return len(events) == depth + 1 and all(e["status"] in ("succeeded", "failed") for e in events)

        await eventually(all_done, what=f"{depth + 1} finished events")
        await asyncio.sleep(0.5)  # nothing more arrives once the deepest event's step has failed
        events = sorted(await count_events(r), key=lambda e: e["chain_depth"])
        details = [await r.event(e["id"]) for e in events]
    assert first["chain_depth"] == 0
    assert len(events) == depth + 1
    assert [e["chain_depth"] for e in details] == list(range(depth + 1))
    assert [e["body"] for e in details] == [{"n": n} for n in range(depth + 1)]
    assert [e["status"] for e in details] == ["succeeded"] * depth + ["failed"]
    for parent, child in itertools.pairwise(details):
        assert parent["runs"][0]["steps"][0]["output"]["body"]["event_id"] == child["id"]
        assert child["dedupe_key"] == f"emit:{parent['id']}:again:emit"
    (last_step,) = details[-1]["runs"][0]["steps"]
    assert last_step["status"] == "failed"
    assert last_step["error"].startswith(
        f"emit depth limit reached: this event is {depth} emits deep and the limit is {depth} (ROUTER_MAX_EMIT_DEPTH)"
    )
    assert last_step["output"] is None
    (attempt,) = last_step["attempts"]
    assert (attempt["outcome"], attempt["retryable"]) == ("failed", False)
    assert details[-1]["runs"][0]["error"] == f"step 'emit': {last_step['error']}"


async def test_retried_emit_returns_the_first_event(router_factory: RouterFactory, database_url: str) -> None:
    files = rule_files(("orders", "audit"), emit_rule())
    async with router_factory(files, database_url=database_url) as r:
        parent = await post(r, "orders", ORDER)
        child_id = parent["runs"][0]["steps"][0]["output"]["body"]["event_id"]
        settings = r.settings
        ruleset = load_ruleset(settings.rules_dir)
        state = await create_state(settings, RulesHolder(current=ruleset, loaded=True), migrate=False)
        try:
            async with state.sessions() as session:
                event = await session.get(Event, parent["id"])
                row = (await session.scalars(select(RunStep).where(RunStep.step_id == "forward"))).one()
            assert event is not None
            key = "emit:" + row.idempotency_key
            emit = partial(state.deliverer.emit, ruleset, event.chain_depth, row.id, "audit")
            again = await emit(CHILD_BODY, {}, key)
            twice = await emit({"other": True}, {}, key)
            fresh = await emit({"other": True}, {}, key + ":other")
            async with state.sessions() as session:
                audit_count = await session.scalar(select(func.count()).where(Event.source == "audit"))
        finally:
            await close_state(state)
        child = await r.event(child_id)
        new = await r.event(fresh)
    assert again == twice == child_id
    assert fresh != child_id
    assert audit_count == 2
    assert child["body"] == CHILD_BODY
    assert (new["body"], new["chain_depth"], new["parent_step_id"]) == ({"other": True}, 1, row.id)


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("nowhere", "unknown source 'nowhere' to emit into"),
        ("Not A Slug", "invalid settings after rendering: with.source: String should match pattern"),
    ],
)
async def test_emit_into_an_unknown_source_fails(router_factory: RouterFactory, target: str, problem: str) -> None:
    rule = emit_rule(target="{{ body.target }}")
    async with router_factory(rule_files(("orders", "audit"), rule)) as r:
        parent = await post(r, "orders", ORDER | {"target": target})
        listing = await count_events(r)
    (step,) = parent["runs"][0]["steps"]
    assert (parent["status"], step["status"]) == ("failed", "failed")
    assert problem in step["error"]
    assert [e["id"] for e in listing] == [parent["id"]]


async def test_longest_ids_make_stable_keys(
    router_factory: RouterFactory, httpserver: HTTPServer, database_url: str, request: pytest.FixtureRequest
) -> None:
    rule_id, emit_id, http_id = "r" * 64, "e" * 64, "h" * 64
    httpserver.expect_request("/call").respond_with_data("ok")
    steps = [
        {"id": emit_id, "action": "emit", "with": {"source": "audit", "body": "{{ body }}"}},
        {"id": http_id, "action": "http", "with": {"url": httpserver.url_for("/call")}},
    ]
    files = rule_files(("orders", "audit"), {"id": rule_id, "source": "orders", "steps": steps})
    async with router_factory(files, database_url=database_url) as r:
        response = await r.hook("orders", ORDER)
        parent = await r.wait_event(response.json()["event_id"], timeout=4)
        child = await r.event(parent["runs"][0]["steps"][0]["output"]["body"]["event_id"])
    keys = [f"{parent['id']}:{rule_id}:{step_id}" for step_id in (emit_id, http_id)]
    assert parent["status"] == "succeeded"
    assert [s["idempotency_key"] for s in parent["runs"][0]["steps"]] == keys
    assert child["dedupe_key"] == f"emit:{keys[0]}"
    assert httpserver.log[0][0].headers["Idempotency-Key"] == keys[1]
