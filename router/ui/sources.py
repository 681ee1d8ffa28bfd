"""``/sources/{id}``: one source: how its events come (webhook URL, poll, reconciliation or schedule), and,
for a source that polls, its state and every poll (when, pages, items seen, new events, duration, error)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Request, get
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter
from litestar.response import Template

from router.polling import history
from router.polling.compile import CompiledPoll
from router.records import stats
from router.records.models import utcnow
from router.runtime import Runtime
from router.ui.render import page

HEALTH_BADGE = {"ok": "ok", "failing": "bad", "overdue": "warn", "new": "unmatched"}
OUTCOME_BADGE = {"ok": "ok", "not_modified": "skipped", "partial": "warn", "failed": "bad"}


def how_it_comes(source: Any, base: str) -> dict[str, Any]:
    """What the page and the overview say about where a source's events come from."""
    url = f"{base}/hooks/{quote(source.id, safe='')}"
    pull = source.pull
    out: dict[str, Any] = {"kind": source.kind, "webhook_url": url if source.takes_webhooks else None}
    out |= {"schedule": None, "poll_url": None, "preset": None}
    if pull is not None:
        out["schedule"] = pull.timing.describe()
        if isinstance(pull, CompiledPoll):
            out["poll_url"] = pull.spec.get("url", "")
            out["preset"] = pull.preset
    return out


async def poll_health(runtime: Runtime, rules: Any, now: Any) -> dict[str, str]:
    """The health of each pulled source (for the overview's badges)."""
    pulled = history.pulled(rules)
    if not pulled:
        return {}
    found = await history.states(runtime.engine, pulled)
    return {sid: history.health_of(found.get(sid), s.pull, now).status for sid, s in pulled.items() if s.pull}


@get("/sources/{source_id:str}", include_in_schema=False)
async def source_page(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    source_id: Annotated[str, PathParameter(description="The source id.")],
) -> Template:
    rules = runtime.rules.current
    source = rules.sources.get(source_id)
    if source is None:
        raise NotFoundException(f"no source {source_id!r} is defined in the rules in force")
    now = utcnow()
    async with runtime.sessions() as session:
        activity = (await stats.source_activity(session, [source.id], now - timedelta(days=1)))[source.id]
    how = how_it_comes(source, str(request.base_url).rstrip("/"))
    polling = await _polling(runtime, source, now)
    return page(request, "sources/detail.html", source=source, how=how, activity=activity, **polling)


async def _polling(runtime: Runtime, source: Any, now: datetime) -> dict[str, Any]:
    """For a source that polls: its state and its last 100 polls (with the badges they show)."""
    poll_state: dict[str, Any] | None = None
    polls: list[dict[str, Any]] = []
    if source.pull is not None:
        found = await history.states(runtime.engine, [source.id])
        poll_state = history.state_dict(found.get(source.id), source.pull, now)
        polls = [history.poll_dict(r) for r in await history.polls(runtime.engine, source.id, limit=100)]
    return {"poll_state": poll_state, "polls": polls, "health_badge": HEALTH_BADGE, "outcome_badge": OUTCOME_BADGE}


HANDLERS = [source_page]
