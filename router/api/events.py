"""``/api/events``: what arrived, and what happened to it (runs, steps, attempts)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar.exceptions import NotFoundException
from litestar.params import QueryParameter

from router.api.params import EventId, ReceivedSince
from router.api.routes import Routes
from router.pipeline import runwait
from router.records import eventlog
from router.records.eventlog import RUN_STATES, STATUSES, EventFilter, event_detail, event_summary, load_event
from router.runtime import Runtime

events = Routes("events")


@events.get("/api/events", operation_id="ListEvents")
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
    since: ReceivedSince = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500, description="Page size.")] = 50,
    before: Annotated[
        str | None, QueryParameter(description="Cursor: events older than this id (the last page's `next`).")
    ] = None,
) -> dict[str, Any]:
    """List events, newest first."""
    async with runtime.sessions() as session:
        page = await eventlog.list_events(session, EventFilter(source, status, q, since), limit=limit, before=before)
        worst = await runwait.worst_states(session, [e.id for e in page.events])
    return {
        "events": [event_summary(e) | {"run_state": worst.get(e.id)} for e in page.events],
        "next": page.next,
    }


@events.get("/api/events/{event_id:str}", operation_id="GetEvent")
async def get_event(runtime: Runtime, event_id: EventId) -> dict[str, Any]:
    """One event with its runs, steps and attempts."""
    async with runtime.sessions() as session:
        event = await load_event(session, event_id)
    if event is None:
        raise NotFoundException(f"no event {event_id!r}")
    rules = runtime.rules.current
    return event_detail(event, rules.sources.get(event.source), rules.secrets)


@events.get("/api/events/{event_id:str}/explain", operation_id="ExplainEvent")
async def explain_event(
    runtime: Runtime, event_id: EventId, rule: Annotated[str, QueryParameter(description="Id of a loaded rule.")]
) -> dict[str, Any]:
    """Why a rule matched this event or not, operand by operand, and what its steps rendered."""
    from router.tryout.explain import explain_loaded

    return await explain_loaded(runtime.sessions, runtime.rules.current, rule, event_id)
