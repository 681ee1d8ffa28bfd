"""``GET /health``: 200 only when the database, Redis and a valid rule set are all ready."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Response, get
from litestar.datastructures import State

from router import db


async def _check(coro: Any) -> dict[str, Any]:
    try:
        await asyncio.wait_for(coro, timeout=2.0)
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__}


@get(
    "/health",
    operation_id="Health",
    tags=["health"],
    summary="Readiness of the database, Redis and rules",
    opt={"public": True},
)
async def health(state: State) -> Response[dict[str, Any]]:
    database = await _check(db.ping(state.engine))
    redis = await _check(state.redis.ping())
    rules = state.rules
    rules_check: dict[str, Any] = {
        "ok": rules.loaded and not rules.errors,
        "version": rules.current.version,
        "sources": len(rules.current.sources),
        "rules": len(rules.current.rules),
    }
    if rules.errors:
        rules_check["errors"] = rules.errors
    if not rules.loaded and not rules.errors:
        rules_check["error"] = "rules not loaded yet"
    checks = {"database": database, "redis": redis, "rules": rules_check}
    failing = [name for name, c in checks.items() if not c["ok"]]
    body = {"status": "ok" if not failing else "unavailable", "failing": failing, "checks": checks}
    return Response(body, status_code=200 if not failing else 503)
