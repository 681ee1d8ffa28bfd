"""``/inboxes``: the built-in inbox as pages: every inbox, and one inbox's requests as they arrive (live).

Viewing is separate from catching: ``/inbox/{name}`` records what is sent to it, and a browser that opens
that URL is sent here instead of being recorded (``router.records.inbox.is_page_view``).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from router.records import inbox
from router.runtime import Runtime
from router.ui.render import page

PAGE = 50


@get("/inboxes", include_in_schema=False)
async def inboxes_page(request: Request[Any, Any, Any], runtime: Runtime) -> Template:
    async with runtime.sessions() as session:
        found = await inbox.inboxes(session)
    base = str(request.base_url).rstrip("/")
    return page(request, "inbox/list.html", inboxes=found, base=base)


@get("/inboxes/{name:str}", include_in_schema=False)
async def inbox_page(request: Request[Any, Any, Any], runtime: Runtime, name: FromPath[str]) -> Template:
    async with runtime.sessions() as session:
        rows = await inbox.requests(session, name[:64], limit=PAGE)
    base = str(request.base_url).rstrip("/")
    return page(
        request,
        "inbox/detail.html",
        name=name[:64],
        rows=rows,
        url=f"{base}/inbox/{name[:64]}",
        newest=rows[0].id if rows else "",
    )


@get("/inboxes/{name:str}/rows", include_in_schema=False)
async def inbox_rows(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    name: FromPath[str],
    after: FromQuery[str] = "",
) -> Template:
    """Requests newer than ``after`` (polled every 2 s by the inbox page)."""
    async with runtime.sessions() as session:
        rows = await inbox.requests(session, name[:64], after=after[:26] or None, limit=PAGE)
    return page(request, "inbox/_rows.html", name=name[:64], rows=rows, newest=rows[0].id if rows else after)


HANDLERS = [inboxes_page, inbox_page, inbox_rows]
