"""``/api/events``: what arrived, and what happened to it (runs, steps, attempts)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter, QueryParameter
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from router.models import Attempt, Event, Run, RunStep

STATUSES = ("received", "routed", "unmatched", "succeeded", "failed")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def event_summary(e: Event) -> dict[str, Any]:
    return {
        "id": e.id,
        "source": e.source,
        "received_at": _iso(e.received_at),
        "status": e.status,
        "matched": e.matched,
        "method": e.method,
        "chain_depth": e.chain_depth,
        "dedupe_key": e.dedupe_key,
    }


def attempt_dict(a: Attempt) -> dict[str, Any]:
    return {
        "number": a.number,
        "started_at": _iso(a.started_at),
        "duration_ms": a.duration_ms,
        "outcome": a.outcome,
        "error": a.error,
        "retryable": a.retryable,
        "request": a.request,
        "response_status": a.response_status,
        "response_body": a.response_body,
    }


def step_dict(s: RunStep) -> dict[str, Any]:
    return {
        "id": s.step_id,
        "action": s.action,
        "status": s.status,
        "idempotency_key": s.idempotency_key,
        "rendered": s.rendered,
        "output": s.output,
        "error": s.error,
        "note": s.note,
        "next_attempt_at": _iso(s.next_attempt_at),
        "started_at": _iso(s.started_at),
        "finished_at": _iso(s.finished_at),
        "attempts": [attempt_dict(a) for a in s.attempts],
    }


def run_dict(r: Run) -> dict[str, Any]:
    return {
        "id": r.id,
        "rule_id": r.rule_id,
        "rule_location": r.rule_location,
        "ruleset_version": r.ruleset_version,
        "status": r.status,
        "error": r.error,
        "created_at": _iso(r.created_at),
        "started_at": _iso(r.started_at),
        "finished_at": _iso(r.finished_at),
        "steps": [step_dict(s) for s in r.steps],
    }


@get("/api/events", operation_id="ListEvents", tags=["events"], summary="List events, newest first")
async def list_events(
    state: State,
    source: Annotated[str | None, QueryParameter(description="Only this source.")] = None,
    status: Annotated[str | None, QueryParameter(description=f"Only this status: {', '.join(STATUSES)}.")] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500, description="Page size.")] = 50,
    before: Annotated[
        str | None, QueryParameter(description="Cursor: events older than this id (the last page's `next`).")
    ] = None,
) -> dict[str, Any]:
    query = select(Event).order_by(Event.id.desc()).limit(limit + 1)
    if source:
        query = query.where(Event.source == source)
    if status:
        query = query.where(Event.status == status)
    if before:
        query = query.where(Event.id < before)
    async with state.sessions() as session:
        rows = list((await session.scalars(query)).all())
    page, more = rows[:limit], len(rows) > limit
    return {"events": [event_summary(e) for e in page], "next": page[-1].id if more and page else None}


@get(
    "/api/events/{event_id:str}",
    operation_id="GetEvent",
    tags=["events"],
    summary="One event with its runs, steps and attempts",
)
async def get_event(state: State, event_id: Annotated[str, PathParameter(description="Event id.")]) -> dict[str, Any]:
    query = (
        select(Event)
        .where(Event.id == event_id)
        .options(selectinload(Event.runs).selectinload(Run.steps).selectinload(RunStep.attempts))
    )
    async with state.sessions() as session:
        event = (await session.scalars(query)).first()
    if event is None:
        raise NotFoundException(f"no event {event_id!r}")
    return event_summary(event) | {
        "path": event.path,
        "headers": event.headers,
        "query": event.query,
        "content_type": event.content_type,
        "body": event.body,
        "ruleset_version": event.ruleset_version,
        "routed_at": _iso(event.routed_at),
        "parent_step_id": event.parent_step_id,
        "runs": [run_dict(r) for r in event.runs],
    }


@get(
    "/api/events/{event_id:str}/explain",
    operation_id="ExplainEvent",
    tags=["events"],
    summary="Why a rule matched this event or not, operand by operand, and what its steps rendered",
)
async def explain_event(
    state: State,
    event_id: Annotated[str, PathParameter(description="Event id.")],
    rule: Annotated[str, QueryParameter(description="Id of a loaded rule.")],
) -> dict[str, Any]:
    from router.explain import explain_stored

    rs = state.rules.current
    compiled = rs.rules.get(rule)
    if compiled is None:
        raise NotFoundException(f"no loaded rule {rule!r}")
    result = await explain_stored(state.sessions, compiled, event_id, rs.secrets)
    if result is None:
        raise NotFoundException(f"no event {event_id!r}")
    return result
