"""``GET /api/alerts``: the alerts of the rule files and what each last saw (router/ops/alerts.py)."""

from __future__ import annotations

from typing import Any

from router.api.routes import Routes
from router.ops import alerts
from router.runtime import Runtime

monitoring = Routes("monitoring")


@monitoring.get("/api/alerts", operation_id="ListAlerts")
async def list_alerts(runtime: Runtime) -> dict[str, Any]:
    """Alerts and their states.

    Every configured alert, firing ones first, with one state per subject (destination, source, or "").
    """
    return {"alerts": await alerts.overview(runtime.engine, runtime.rules.current)}
