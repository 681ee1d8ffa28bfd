"""Health endpoints: live answers while the process does, ready needs the database, Redis, rules and a
worker's heartbeat, and /health reports the workers and the storage (size, oldest event kept)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import RouterFactory, eventually, free_port

RULES = {
    "r.yaml": """
    sources:
      - {id: shop}
    rules:
      - {id: r, source: shop, steps: [{id: s, action: http, when: "false", with: {url: "http://127.0.0.1:9/"}}]}
    """
}


async def get(r: Any, path: str) -> tuple[int, dict[str, Any]]:
    response = await r.client.get(path)
    return response.status_code, response.json()


async def test_ready_needs_a_worker_heartbeat_and_live_does_not(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False, heartbeat_timeout=3) as r:
        assert await get(r, "/health/live") == (200, {"status": "ok"})
        status, body = await get(r, "/health/ready")
        assert status == 503
        assert body["failing"] == ["workers"]
        assert "ROUTER_HEARTBEAT_TIMEOUT" in body["checks"]["workers"]["error"]
        assert all(body["checks"][name]["ok"] for name in ("database", "redis", "rules"))
        status, health = await get(r, "/health")
        assert status == 200  # /health keeps its meaning: database, Redis and rules
        assert health["workers"]["alive"] == 0
    async with router_factory(RULES, database_url=r.settings.database_url, heartbeat_timeout=3) as r2:

        async def ready() -> bool:
            return (await r2.client.get("/health/ready")).status_code == 200

        await eventually(ready, timeout=10, what="a worker heartbeat")
        _status, body = await get(r2, "/health/ready")
        (worker,) = body["checks"]["workers"]["workers"]
        assert worker["database"] == "ok"
        assert body["checks"]["workers"]["alive"] == 1


async def test_ready_names_redis_when_it_is_down(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False, redis_url=f"redis://127.0.0.1:{free_port()}/0") as r:
        status, body = await get(r, "/health/ready")
        assert status == 503
        assert set(body["failing"]) == {"redis", "workers"}
        assert (await r.client.get("/health/live")).status_code == 200


@pytest.mark.postgres
async def test_health_reports_database_size_and_oldest_event(router_factory: RouterFactory, database_url: str) -> None:
    async with router_factory(RULES, worker=False, database_url=database_url) as r:
        _status, body = await get(r, "/health")
        storage = body["storage"]
        assert storage["database_bytes"] > 0
        assert storage["oldest_event_at"] is None
        first = (await r.hook("shop", {"n": 1})).json()["event_id"]
        await r.hook("shop", {"n": 2})
        _status, body = await get(r, "/health")
        assert body["storage"]["oldest_event_id"] == first
        assert body["storage"]["oldest_event_at"].startswith("20")
