"""Health: ``/health/live`` (the process answers), ``/health/ready`` (it can do its job) and ``/health``.

- ``/health/live``: 200 whenever the process answers; for liveness probes (restart when it fails).
- ``/health/ready``: 200 when the database and Redis answer, a valid rule set is loaded and a worker
  has beaten within ``ROUTER_HEARTBEAT_TIMEOUT`` seconds (router/ops/heartbeat.py); 503 naming what fails.
- ``/health``: the database, Redis and rules (as before: 200 or 503), plus what it knows of the workers
  and the storage (database size, oldest event kept), which never fail it. Polled and scheduled
  sources are reported under ``checks.polls``: one failing (3 polls in a row) or overdue makes
  ``status`` ``degraded``, still 200 (the router serves; a provider's API is failing).
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Response

from router.api.routes import Routes
from router.ops import heartbeat
from router.records import db, storage
from router.runtime import Runtime

probes = Routes("health", opt={"public": True})


async def _check(coro: Any) -> dict[str, Any]:
    try:
        await asyncio.wait_for(coro, timeout=2.0)
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": _error(exc)}


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _rules(runtime: Runtime) -> dict[str, Any]:
    rules = runtime.rules
    check: dict[str, Any] = {
        "ok": rules.loaded and not rules.errors,
        "version": rules.current.version,
        "sources": len(rules.current.sources),
        "rules": len(rules.current.rules),
    }
    if rules.errors:
        check["errors"] = rules.errors
    if not rules.loaded and not rules.errors:
        check["error"] = "rules not loaded yet"
    return check


async def _workers(runtime: Runtime) -> dict[str, Any]:
    timeout = runtime.settings.heartbeat_timeout
    try:
        found = await asyncio.wait_for(heartbeat.alive(runtime.redis), timeout=2.0)
    except Exception as exc:
        return {"ok": False, "alive": 0, "error": f"cannot read worker heartbeats: {_error(exc)}"}
    check: dict[str, Any] = {
        "ok": bool(found),
        "alive": len(found),
        "workers": [{k: w.get(k) for k in ("id", "version", "database")} for w in found],
    }
    if not found:
        check["error"] = (
            f"no worker has beaten in the last {timeout:g} s (ROUTER_HEARTBEAT_TIMEOUT); start `router worker`"
        )
    return check


def _answer(checks: dict[str, dict[str, Any]], extra: dict[str, Any] | None = None) -> Response[dict[str, Any]]:
    failing = [name for name, c in checks.items() if not c["ok"]]
    degraded = [name for name, c in (extra or {}).get("advisories", {}).items() if not c["ok"]]
    status = "unavailable" if failing else ("degraded" if degraded else "ok")
    advisories = (extra or {}).pop("advisories", {})
    body = {"status": status, "failing": failing, "degraded": degraded, "checks": checks | advisories}
    return Response(body | (extra or {}), status_code=200 if not failing else 503)


async def _polls(runtime: Runtime) -> dict[str, Any]:
    from router.polling.history import health_check
    from router.records.models import utcnow

    try:
        return await asyncio.wait_for(health_check(runtime.engine, runtime.rules.current, utcnow()), timeout=2.0)
    except Exception as exc:
        return {"ok": True, "error": f"poll state unreadable: {type(exc).__name__}"}


@probes.get("/health", operation_id="Health")
async def health(runtime: Runtime) -> Response[dict[str, Any]]:
    """Readiness of the database, Redis and rules; workers and storage for information."""
    database = await _check(db.ping(runtime.engine))
    redis = await _check(runtime.redis.ping())
    checks = {"database": database, "redis": redis, "rules": _rules(runtime)}
    workers = await _workers(runtime) if redis["ok"] else {"alive": None}
    kept = await storage.storage_figures(runtime.engine) if database["ok"] else {}
    polls = await _polls(runtime) if database["ok"] else {"ok": True, "skipped": "database unavailable"}
    extra = {"workers": {k: v for k, v in workers.items() if k != "ok"}, "storage": kept}
    return _answer(checks, extra | {"advisories": {"polls": polls}})


@probes.get("/health/live", operation_id="HealthLive")
async def live() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@probes.get("/health/ready", operation_id="HealthReady")
async def ready(runtime: Runtime) -> Response[dict[str, Any]]:
    """Database, Redis, rules and a worker heartbeat are all ready."""
    database, redis = await asyncio.gather(_check(db.ping(runtime.engine)), _check(runtime.redis.ping()))
    workers = await _workers(runtime) if redis["ok"] else {"ok": False, "error": "Redis does not answer"}
    return _answer({"database": database, "redis": redis, "rules": _rules(runtime), "workers": workers})
