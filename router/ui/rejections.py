"""``/rejections``: webhooks that were refused (wrong signature, unknown source, too large, bad body), newest first.

Read-only; per source and overall, filtered by status. The rows come from ``router.records.rejections``.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Request, get
from litestar.params import QueryParameter
from litestar.response import Template

from router.records.rejections import RejectionFilter, list_rejections
from router.rules.compiled import RuleSet
from router.runtime import Runtime
from router.ui.render import page

PAGE = 50
STATUSES = {
    400: "400 bad body",
    401: "401 signature",
    404: "404 unknown source",
    413: "413 too large",
    415: "415 compressed",
    503: "503 storage down",
}


@get("/rejections", include_in_schema=False)
async def rejections_page(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    source: Annotated[str, QueryParameter()] = "",
    status: Annotated[str, QueryParameter()] = "",
    before: Annotated[str, QueryParameter()] = "",
) -> Template:
    source, before = source.strip()[:64], before.strip()[:26]
    error = ""
    code: int | None = None
    if status.strip():
        if status.strip().isdigit() and int(status) in STATUSES:
            code = int(status)
        else:
            error = f"status: {status!r} is not one of {', '.join(map(str, STATUSES))}; showing every status"
    async with runtime.sessions() as session:
        rows, older = await list_rejections(session, RejectionFilter(source or None, code), before=before, limit=PAGE)
    rules: RuleSet = runtime.rules.current
    params = {k: v for k, v in {"source": source, "status": str(code or "")}.items() if v}
    return page(
        request,
        "rejections/list.html",
        rows=rows,
        source=source,
        chosen=code,
        statuses=STATUSES,
        sources=sorted(set(rules.sources) | ({source} if source else set())),
        error=error,
        older=f"/rejections?{urlencode(params | {'before': older})}" if older else "",
        newest=f"/rejections?{urlencode(params)}" if before else "",
    )


HANDLERS = [rejections_page]
