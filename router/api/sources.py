"""``/api/sources/{source}/polls``: a polled, reconciled or scheduled source's state and its polls."""

from __future__ import annotations

from typing import Annotated, Any

from litestar.exceptions import NotFoundException
from litestar.params import PathParameter, QueryParameter

from router.api.params import page_of
from router.api.routes import Routes
from router.polling import history
from router.records.models import utcnow
from router.runtime import Runtime

sources = Routes("sources")


@sources.get("/api/sources/{source:str}/polls", operation_id="ListSourcePolls")
async def source_polls(
    runtime: Runtime,
    source: Annotated[str, PathParameter(description="The source id.")],
    limit: Annotated[int, QueryParameter(ge=1, le=500, description="Polls per page.")] = 50,
    before: Annotated[str | None, QueryParameter(description="Cursor: polls older than this id (`next`).")] = None,
) -> dict[str, Any]:
    """A polled, reconciled or scheduled source: its state (cursor, next poll, failures) and its polls."""
    compiled = runtime.rules.current.sources.get(source)
    if compiled is None:
        raise NotFoundException(f"no source {source!r} is defined")
    if compiled.pull is None:
        raise NotFoundException(f"source {source!r} takes webhooks only: it has no poll, reconcile or schedule")
    found = await history.states(runtime.engine, [source])
    page, following = page_of(await history.polls(runtime.engine, source, limit=limit + 1, before=before), limit)
    return {
        "source": source,
        "state": history.state_dict(found.get(source), compiled.pull, utcnow()),
        "polls": [history.poll_dict(r) for r in page],
        "next": following,
    }
