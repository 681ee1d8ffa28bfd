"""``GET /api/alerts``: the alerts of the rule files and what each last saw (router/ops/alerts.py)."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.datastructures import State

from router.ops import alerts


@get("/api/alerts", operation_id="ListAlerts", tags=["monitoring"], summary="Alerts and their states")
async def list_alerts(state: State) -> dict[str, Any]:
    """Every configured alert, firing ones first, with one state per subject (destination, source, or "")."""
    return {"alerts": await alerts.overview(state.engine, state.rules.current)}
