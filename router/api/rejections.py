"""``GET /api/rejections``: the ingest requests that were refused, newest first (a thin handler)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar.params import QueryParameter

from router.api.params import ReceivedSince
from router.api.routes import Routes
from router.records.eventlog import as_utc
from router.records.rejections import RejectionFilter, as_dict, list_rejections
from router.runtime import Runtime

ingest = Routes("ingest")


@ingest.get("/api/rejections", operation_id="ListRejections")
async def list_rejected(
    runtime: Runtime,
    source: Annotated[str | None, QueryParameter(description="Only this source (as it was in the URL).")] = None,
    status: Annotated[int | None, QueryParameter(ge=100, le=599, description="Only this HTTP status.")] = None,
    since: ReceivedSince = None,
    before: Annotated[str | None, QueryParameter(description="The `next` of the previous page.")] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500, description="At most this many, newest first.")] = 100,
) -> dict[str, Any]:
    """Rejected webhooks: time, source, status, reason, remote address, redacted headers, body size."""
    f = RejectionFilter(source or None, status, as_utc(since) if since else None)
    async with runtime.sessions() as session:
        rows, following = await list_rejections(session, f, before=before, limit=limit)
    return {"rejections": [as_dict(r) for r in rows], "next": following}
