"""A poll that keeps failing shows in /health; /api/sources/{id}/polls shows each poll. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from tests.polling.paged_api import PagedAPI, rules
from tests.polling.test_poller import Clock, make_poller

pytestmark = pytest.mark.postgres


async def test_failing_polls_show_in_health_and_the_polls_api(
    api_server: HTTPServer, router_factory: Any, database_url: str, tmp_path: Path
) -> None:
    api = PagedAPI.start(api_server, style="body", page_size=2)
    api.add(3)
    api.plan = {1: (500, None), 2: (500, None), 3: (503, "1"), 4: (401, None)}
    text = rules(api, query='{updated_since: "{{ cursor | default(\'1970\') }}", key: "{{ secrets.SHOP_KEY }}"}')
    files = {"shop.yaml": text}
    env = {"ROUTER_SECRET_SHOP_KEY": "sk-live-0123456789"}
    async with router_factory(files, database_url=database_url, worker=False, env=env) as r:
        p = await make_poller(tmp_path, database_url, files, env=env)
        clock = Clock(datetime.now(UTC))
        p.deps.clock = clock
        try:
            health = (await r.client.get("/health")).json()
            assert health["checks"]["polls"] == {"ok": True, "sources": 1, "problems": []}
            for _ in range(2):
                assert (await p.poll(now=clock.now)).outcome == "failed"
            health = (await r.client.get("/health")).json()
            assert health["status"] == "ok"  # two failures: not yet
            assert (await p.poll(now=clock.now)).outcome == "failed"
            response = await r.client.get("/health")
            assert response.status_code == 200
            health = response.json()
            assert (health["status"], health["degraded"]) == ("degraded", ["polls"])
            (problem,) = health["checks"]["polls"]["problems"]
            assert problem["source"] == "shop-orders"
            assert problem["health"] == "failing"
            assert "3 polls in a row failed" in problem["problem"]
            assert "answered 503" in problem["problem"]
            assert "sk-live" not in response.text  # the key in the query is masked
            assert "[secret:SHOP_KEY]" in response.text

            polls = (await r.client.get("/api/sources/shop-orders/polls")).json()
            assert polls["state"]["health"] == "failing"
            assert polls["state"]["failures"] == 3
            assert [x["outcome"] for x in polls["polls"]] == ["failed"] * 3
            assert polls["polls"][0]["status"] == 503

            assert (await p.poll(now=clock.now)).outcome == "failed"  # 401: still failing
            ok = await p.poll(now=clock.advance(1))
            assert (ok.outcome, len(ok.new)) == ("ok", 3)
            health = (await r.client.get("/health")).json()
            assert health["status"] == "ok"
            polls = (await r.client.get("/api/sources/shop-orders/polls?limit=2")).json()
            first = polls["polls"][0]
            assert (first["outcome"], first["pages"], first["items"], first["new_events"]) == ("ok", 2, 3, 3)
            assert first["trigger"] == "schedule"
            assert polls["next"] == polls["polls"][1]["id"]
            older = (await r.client.get(f"/api/sources/shop-orders/polls?limit=2&before={polls['next']}")).json()
            assert len(older["polls"]) == 2
            assert polls["state"]["health"] == "ok"
            assert polls["state"]["cursor"] == "2026-12-01T10:00:02Z"
            assert (await r.client.get("/api/sources/nope/polls")).status_code == 404
        finally:
            await p.http.aclose()
            await p.engine.dispose()


async def test_a_source_nobody_polls_is_overdue(router_factory: Any, database_url: str, tmp_path: Path) -> None:
    files = {"tick.yaml": "sources:\n  - id: tick\n    schedule: {every: 10s}\n"}
    async with router_factory(files, database_url=database_url, worker=False) as r:
        p = await make_poller(tmp_path, database_url, files)
        try:
            from router.polling import store

            long_ago = datetime.now(UTC) - timedelta(minutes=10)
            await store.sync_states(p.engine, {"tick": p.ruleset.sources["tick"].pull}, long_ago)  # type: ignore[dict-item]
        finally:
            await p.http.aclose()
            await p.engine.dispose()
        health = (await r.client.get("/health")).json()
        assert health["status"] == "degraded"
        (problem,) = health["checks"]["polls"]["problems"]
        assert problem["health"] == "overdue"
        assert "is a worker running?" in problem["problem"]
