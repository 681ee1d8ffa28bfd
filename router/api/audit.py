"""``/api/audit``: the audit log, newest first, with filters and a cursor (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar.params import QueryParameter

from router.access import audit
from router.api.params import NewestFirst, page_of
from router.api.routes import Routes
from router.runtime import Runtime

admin = Routes("access", opt={"role": "admin"})


@admin.get("/api/audit", operation_id="ListAudit")
async def list_audit(
    runtime: Runtime,
    actor: Annotated[
        str | None, QueryParameter(description="Entries whose actor starts with this, e.g. alice or cli:.")
    ] = None,
    action: Annotated[str | None, QueryParameter(description="Only this action, e.g. user_create.")] = None,
    since: Annotated[datetime | None, QueryParameter(description="At or after this time (ISO 8601).")] = None,
    before: Annotated[
        str | None, QueryParameter(description="The `next` of the previous page: entries older than it.")
    ] = None,
    limit: NewestFirst = 100,
) -> dict[str, Any]:
    """The audit log (admin)."""
    async with runtime.sessions() as session:
        entries = await audit.list_entries(
            session, limit=limit + 1, before=before, actor=actor, action=action, since=since
        )
    page, following = page_of(entries, limit)
    return {"entries": [audit.entry_dict(e) for e in page], "next": following}
