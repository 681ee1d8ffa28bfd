"""``GET /health``: 200 only when the database, Redis and a valid rule set are all ready.

Polled and scheduled sources are reported under ``checks.polls``: one failing (3 polls in a row) or
overdue makes ``status`` ``degraded``, still 200 (the router serves; a provider's API is failing).
"""

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
    polls = await _polls(state) if database["ok"] else {"ok": True, "skipped": "database unavailable"}
    degraded = [] if polls["ok"] else ["polls"]
    status = "unavailable" if failing else ("degraded" if degraded else "ok")
    body = {"status": status, "failing": failing, "degraded": degraded, "checks": checks | {"polls": polls}}
    return Response(body, status_code=200 if not failing else 503)


async def _polls(state: State) -> dict[str, Any]:
    from router.models import utcnow
    from router.polling.history import health_check

    try:
        return await asyncio.wait_for(health_check(state.engine, state.rules.current, utcnow()), timeout=2.0)
    except Exception as exc:
        return {"ok": True, "error": f"poll state unreadable: {type(exc).__name__}"}
