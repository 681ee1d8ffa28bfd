"""``/rejections``: webhooks that were refused (wrong signature, unknown source, too large, bad body), newest first.

Read-only; per source and overall, filtered by status. The rows come from ``router.records.rejections``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery
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


class Filters:
    """The list's filters as the user gave them, checked: ``error`` names the field and the fix.

    The page takes them from the query as the dependency ``filters``; ``code`` is the status chosen.
    """

    def __init__(self, source: FromQuery[str] = "", status: FromQuery[str] = "", before: FromQuery[str] = "") -> None:
        self.source, self.before = source.strip()[:64], before.strip()[:26]
        self.code: int | None = None
        self.error = ""
        if status.strip():
            if status.strip().isdigit() and int(status) in STATUSES:
                self.code = int(status)
            else:
                self.error = f"status: {status!r} is not one of {', '.join(map(str, STATUSES))}; showing every status"

    def link(self, **extra: str) -> str:
        """``/rejections`` with these filters (the cursor left out) and ``extra``."""
        params = {k: v for k, v in {"source": self.source, "status": str(self.code or "")}.items() if v}
        return f"/rejections?{urlencode(params | extra)}"


@get("/rejections", include_in_schema=False, dependencies={"filters": Provide(Filters, sync_to_thread=False)})
async def rejections_page(
    request: Request[Any, Any, Any], runtime: Runtime, filters: NamedDependency[Filters]
) -> Template:
    chosen = RejectionFilter(filters.source or None, filters.code)
    async with runtime.sessions() as session:
        rows, older = await list_rejections(session, chosen, before=filters.before, limit=PAGE)
    rules: RuleSet = runtime.rules.current
    return page(
        request,
        "rejections/list.html",
        rows=rows,
        source=filters.source,
        chosen=filters.code,
        statuses=STATUSES,
        sources=sorted(set(rules.sources) | ({filters.source} if filters.source else set())),
        error=filters.error,
        older=filters.link(before=older) if older else "",
        newest=filters.link() if filters.before else "",
    )


HANDLERS = [rejections_page]
