"""``GET /metrics``: the Prometheus exposition of this web deployment (every process of it)."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from litestar import Response
from litestar.datastructures import State

from router import metrics
from router.api.routes import Routes
from router.pipeline import destinations

log = structlog.get_logger("router.api.metrics")
probes = Routes("health", opt={"public": True})


@probes.get("/metrics", operation_id="Metrics", media_type=metrics.CONTENT_TYPE)
async def scrape(state: State) -> Response[bytes]:
    """Prometheus metrics.

    Counters of every web process; queue and dead-letter gauges read from the database now; breakers as the
    workers last published them. A database or Redis that does not answer leaves its gauges out, not the page.
    """
    queue: metrics.QueueFigures | None = None
    breakers: dict[str, bool] = {}
    try:
        queue = await asyncio.wait_for(metrics.queue_figures(state.engine), timeout=5)
    except Exception as exc:
        log.warning("metrics_queue_unavailable", error=f"{type(exc).__name__}: {exc}")
    with contextlib.suppress(Exception):
        found = await asyncio.wait_for(destinations.overview(state.engine, state.redis), timeout=5)
        breakers = metrics.breakers_from_overview(found)
    gauges = metrics.Gauges(queue, len(state.rules.current.rules), breakers)
    return Response(metrics.render(gauges), media_type=metrics.CONTENT_TYPE)
