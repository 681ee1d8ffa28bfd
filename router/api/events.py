"""``/api/events``: what arrived, and what happened to it (runs, steps, attempts)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import get
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter, QueryParameter

from router.pipeline import runwait
from router.records import eventlog
from router.records.eventlog import RUN_STATES, STATUSES, EventFilter, event_detail, event_summary, load_event
from router.runtime import Runtime


@get("/api/events", operation_id="ListEvents", tags=["events"], summary="List events, newest first")
async def list_events(
    runtime: Runtime,
    source: Annotated[str | None, QueryParameter(description="Only this source.")] = None,
    status: Annotated[
        str | None,
        QueryParameter(
            description=f"Only this status: {', '.join(STATUSES)}; or events with a run that is "
            f"{', '.join(RUN_STATES)}."
        ),
    ] = None,
    q: Annotated[
        str | None,
        QueryParameter(
            description="Only events whose JSON body contains this text (any case); each page reads at most "
            "the 20,000 newest events below its cursor, so a page may be short while `next` goes on."
        ),
    ] = None,
    since: Annotated[datetime | None, QueryParameter(description="Received at or after (ISO 8601).")] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500, description="Page size.")] = 50,
    before: Annotated[
        str | None, QueryParameter(description="Cursor: events older than this id (the last page's `next`).")
    ] = None,
) -> dict[str, Any]:
    async with runtime.sessions() as session:
        page = await eventlog.list_events(session, EventFilter(source, status, q, since), limit=limit, before=before)
        worst = await runwait.worst_states(session, [e.id for e in page.events])
    return {
        "events": [event_summary(e) | {"run_state": worst.get(e.id)} for e in page.events],
        "next": page.next,
    }


@get(
    "/api/events/{event_id:str}",
    operation_id="GetEvent",
    tags=["events"],
    summary="One event with its runs, steps and attempts",
)
async def get_event(
    runtime: Runtime, event_id: Annotated[str, PathParameter(description="Event id.")]
) -> dict[str, Any]:
    async with runtime.sessions() as session:
        event = await load_event(session, event_id)
    if event is None:
        raise NotFoundException(f"no event {event_id!r}")
    rules = runtime.rules.current
    return event_detail(event, rules.sources.get(event.source), rules.secrets)


@get(
    "/api/events/{event_id:str}/explain",
    operation_id="ExplainEvent",
    tags=["events"],
    summary="Why a rule matched this event or not, operand by operand, and what its steps rendered",
)
async def explain_event(
    runtime: Runtime,
    event_id: Annotated[str, PathParameter(description="Event id.")],
    rule: Annotated[str, QueryParameter(description="Id of a loaded rule.")],
) -> dict[str, Any]:
    from router.tryout.explain import explain_stored

    rs = runtime.rules.current
    compiled = rs.rules.get(rule)
    if compiled is None:
        raise NotFoundException(f"no loaded rule {rule!r}")
    result = await explain_stored(runtime.sessions, compiled, event_id, rs.secrets)
    if result is None:
        raise NotFoundException(f"no event {event_id!r}")
    return result
