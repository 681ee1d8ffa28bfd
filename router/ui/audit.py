"""``/settings/audit``: the audit log for admins, filtered by actor and action, 50 entries a page."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.params import FromQuery
from litestar.response import Template

from router.access import audit
from router.runtime import Runtime
from router.ui.render import page

PAGE = 50


@get("/settings/audit", include_in_schema=False, opt={"role": "admin"})
async def audit_page(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    actor: FromQuery[str] = "",
    action: FromQuery[str] = "",
    before: FromQuery[str] = "",
) -> Template:
    actor, action, before = actor.strip()[:200], action.strip()[:100], before.strip()[:26]
    async with runtime.sessions() as session:
        entries = await audit.list_entries(
            session, limit=PAGE + 1, before=before or None, actor=actor or None, action=action or None
        )
        actions = await audit.actions(session)
    older = entries[PAGE - 1].id if len(entries) > PAGE else ""
    return page(
        request,
        "settings/audit.html",
        entries=entries[:PAGE],
        actions=actions,
        actor=actor,
        action=action,
        before=before,
        older=older,
    )


HANDLERS = [audit_page]
