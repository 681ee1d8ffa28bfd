"""``/``: the overview. Sources and their webhook URLs, activity charts, and failing destinations.

Charts are server-rendered SVG (router/ui/charts.py) over figures counted in the database
(router/records/stats.py). A paused destination can be resumed from here (editor, CSRF, audited).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Request, get, post
from litestar.params import QueryParameter
from litestar.response import Redirect, Response, Template

from router.access.guard import principal_of
from router.ops import alerts
from router.pipeline import destinations
from router.pipeline.queue import enqueuer
from router.records import rejections, stats, storage
from router.records.models import utcnow
from router.rules.compiled import RuleSet
from router.runtime import Runtime
from router.ui.charts import bar_chart, line_chart, stacked_bar_chart
from router.ui.forms import Form
from router.ui.render import page
from router.ui.sources import how_it_comes, poll_health

DEFAULT_RANGE = "24h"


def _range(name: str) -> tuple[str, str]:
    """The range asked for, or the default and a message naming the choices."""
    if name in stats.RANGES:
        return name, ""
    return DEFAULT_RANGE, f"range: {name!r} is not one of {', '.join(stats.RANGES)}; showing {DEFAULT_RANGE}"


async def failing(runtime: Runtime, since: datetime) -> list[dict[str, Any]]:
    """Paused destinations and tripped breakers (router.pipeline.destinations) with the ones whose attempts failed."""
    merged: dict[str, dict[str, Any]] = {}
    for d in await destinations.overview(runtime.engine, runtime.redis):
        breaker = d.get("breaker") or {}
        tripped = breaker.get("state") in ("open", "half_open")
        if d["paused"] or tripped:
            merged[d["destination"]] = {
                "destination": d["destination"],
                "paused": d["paused"],
                "reason": d["reason"] if d["paused"] else "",
                "breaker": breaker.get("state", "") if tripped else "",
                "failures": 0,
                "last_error": None,
                "last_at": None,
            }
    async with runtime.sessions() as session:
        recent = await stats.failing_destinations(session, since)
    for f in recent:
        entry = merged.setdefault(
            f.destination,
            {"destination": f.destination, "paused": False, "reason": "", "breaker": "", "last_error": None},
        )
        entry.update(failures=f.failures, last_error=f.last_error, last_at=f.last_at)
    return sorted(merged.values(), key=lambda d: (not d["paused"], -d["failures"], d["destination"]))


def _per(bucket_minutes: int) -> str:
    return "minute" if bucket_minutes == 1 else f"{bucket_minutes} minutes"


@get("/", include_in_schema=False)
async def overview_page(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    span: Annotated[str, QueryParameter(name="range", description="1h, 6h or 24h.")] = DEFAULT_RANGE,
) -> Template:
    chosen, error = _range(span)
    now = utcnow()
    window = stats.Window.named(chosen, now)
    rules: RuleSet = runtime.rules.current
    async with runtime.sessions() as session:
        activity = await stats.source_activity(session, rules.sources, now - timedelta(days=1))
        events = await stats.events_per_bucket(session, window)
        deliveries = await stats.deliveries_per_bucket(session, window)
        latency = await stats.latency_per_bucket(session, window)
        refused = await rejections.count_since(session, now - timedelta(days=1))
    base = str(request.base_url).rstrip("/")
    pulled = await poll_health(runtime, rules, now)
    sources = [
        {
            "id": source.id,
            "url": f"{base}/hooks/{quote(source.id, safe='')}",
            "scheme": source.verify.scheme if source.verify is not None else "none",
            "preset": source.preset or "",
            "description": source.description,
            "activity": activity[source.id],
            "how": how_it_comes(source, base),
            "health": pulled.get(source.id),
            "rejected": refused.get(source.id, 0),
        }
        for source in rules.sources.values()
    ]
    per = _per(window.bucket_minutes)
    charts = {
        "events": bar_chart(events, title=f"Events received per {per} (UTC)"),
        "deliveries": stacked_bar_chart(  # counts are bars, like the other count charts
            {"succeeded": list(deliveries.succeeded), "failed": list(deliveries.failed)},
            title=f"Delivery attempts per {per} (UTC)",
        ),
        "failures": bar_chart(deliveries.failed, title=f"Failed attempts per {per} (UTC)"),
        "latency": line_chart(latency, title="Delivery latency, p50 and p95", unit="s"),
    }
    return page(
        request,
        "overview.html",
        sources=sources,
        charts=charts,
        totals={
            "events": sum(n for _, n in events),
            "succeeded": sum(n for _, n in deliveries.succeeded),
            "failed": sum(n for _, n in deliveries.failed),
        },
        ranges=list(stats.RANGES),
        range=chosen,
        range_error=error,
        rule_errors=list(runtime.rules.errors),
        failing=await failing(runtime, window.first),
        alerts=await alerts.overview(runtime.engine, rules),
        storage=await storage.storage_figures(runtime.engine),
        rejected_total=sum(refused.values()),
        notice="",
        notice_error=False,
    )


@post("/destinations/resume", include_in_schema=False, status_code=200)
async def resume_button(request: Request[Any, Any, Any], runtime: Runtime, data: Form) -> Response[Any]:
    """Resume a paused destination; htmx gets the failing-destinations section back, a plain form the page."""
    key = str(data.get("destination", "")).strip()
    chosen, _ = _range(str(data.get("range", DEFAULT_RANGE)))
    if not key:
        notice, error = "destination: missing; use the Resume button of a paused destination", True
    else:
        result = await destinations.resume(
            runtime.engine, enqueuer(runtime.redis), key, actor=principal_of(request).actor
        )
        if result["resumed"]:
            notice, error = f"Resumed {key}: {result['runs']} held run(s) sent on their way.", False
        else:
            notice, error = f"{key} is not paused (someone may have resumed it already).", True
    if not request.headers.get("hx-request"):
        return Redirect(f"/?range={chosen}", status_code=303)
    since = stats.Window.named(chosen, utcnow()).first
    return page(
        request,
        "events/_failing.html",
        failing=await failing(runtime, since),
        range=chosen,
        notice=notice,
        notice_error=error,
    )


HANDLERS = [overview_page, resume_button]
