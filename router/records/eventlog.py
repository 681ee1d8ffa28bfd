"""Reading the event log: a filtered page of events, one event in full, and what of it may be shown.

Plain functions over an ``AsyncSession``; the JSON API (``router/api/events.py``) and the UI pages
(``router/ui/events.py``) both call them, so they list, find and redact the same way.

Event ids are ULIDs: they sort by the time they were made, so a time range is also an id range and
the primary key serves it (``id_floor``). Text search is a case-insensitive ``LIKE`` over the stored
JSON body; it reads at most ``SEARCH_SCAN`` of the newest events per page, and the page's cursor
carries on from where the scan stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, Text, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only, selectinload

from router.pipeline.match import redact
from router.pipeline.outbound import REDACT_HEADERS
from router.pipeline.runwait import next_try
from router.records.models import Attempt, Event, Run, RunStep
from router.records.serialize import fields
from router.records.status import EventStatus, RunStatus
from router.rules.compiled import CompiledSource

STATUSES = tuple(EventStatus)
# Filters by a state of the event's runs (router.pipeline.runwait): a routed event whose run waits to retry, …
RUN_STATES = (RunStatus.RETRYING, RunStatus.HELD, RunStatus.DEAD)
FINAL = (EventStatus.UNMATCHED, EventStatus.SUCCEEDED, EventStatus.FAILED)
SEARCH_SCAN = 20_000
REDACTED = "[redacted]"
# The headers the signature schemes put their signature in (router/pipeline/signatures.py); a source's own
# ``verify.header`` is added per source. Shared-secret tokens are already masked when stored.
SIGNATURE_HEADERS = frozenset(
    {
        "x-hub-signature",
        "x-hub-signature-256",
        "stripe-signature",
        "x-slack-signature",
        "x-shopify-hmac-sha256",
        "webhook-signature",
        "x-webhook-token",
    }
)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_SUMMARY = (
    Event.id,
    Event.source,
    Event.received_at,
    Event.status,
    Event.matched,
    Event.method,
    Event.chain_depth,
    Event.dedupe_key,
    Event.via,
)


def id_floor(moment: datetime) -> str:
    """The smallest event id (ULID) made at ``moment`` or later: ``Event.id >= id_floor(t)`` is a time range."""
    value = max(0, int(moment.timestamp() * 1000)) << 80
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def as_utc(moment: datetime) -> datetime:
    """An aware datetime; a naive one is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# -- what is shown -------------------------------------------------------------------------------------


def shown_headers(
    headers: Mapping[str, Any], source: CompiledSource | None, secrets: Mapping[str, str]
) -> dict[str, Any]:
    """Headers as they may be shown: credentials and signatures replaced by ``[redacted]``, secrets masked."""
    names = REDACT_HEADERS | SIGNATURE_HEADERS
    if source is not None and source.verify is not None and source.verify.header:
        names = names | {source.verify.header.lower()}
    out = {k: REDACTED if k.lower() in names else v for k, v in headers.items()}
    shown: dict[str, Any] = redact(out, secrets)
    return shown


def event_summary(e: Any) -> dict[str, Any]:
    """An event in a list (an ``Event`` or a row of its summary columns)."""
    return {
        **fields(e, "id source received_at status matched method chain_depth dedupe_key"),
        "via": e.via or "webhook",
    }


def attempt_dict(a: Attempt) -> dict[str, Any]:
    return fields(a, "number started_at duration_ms outcome error retryable request response_status response_body")


def step_dict(s: RunStep) -> dict[str, Any]:
    return {
        "id": s.step_id,
        **fields(s, "action status idempotency_key rendered output error note next_attempt_at started_at finished_at"),
        "attempts": [attempt_dict(a) for a in s.attempts],
    }


def run_dict(r: Run) -> dict[str, Any]:
    return {
        **fields(r, "id rule_id rule_location ruleset_version status error"),
        **fields(r, "created_at started_at finished_at replay_of next_attempt_at"),
        "next_try": next_try(r.next_attempt_at) if r.status == RunStatus.RETRYING else "",
        "steps": [step_dict(s) for s in r.steps],
    }


def event_detail(event: Event, source: CompiledSource | None, secrets: Mapping[str, str]) -> dict[str, Any]:
    """One event with its runs, steps and attempts; headers and query redacted (``shown_headers``)."""
    return event_summary(event) | {
        "path": event.path,
        "headers": shown_headers(event.headers or {}, source, secrets),
        "query": redact(event.query or {}, secrets),
        **fields(event, "content_type body ruleset_version routed_at parent_step_id"),
        "runs": [run_dict(r) for r in event.runs],
    }


# -- reading -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventFilter:
    """Which events a list shows; empty fields do not filter."""

    source: str | None = None
    status: str | None = None
    text: str | None = None  # case-insensitive, anywhere in the JSON body
    since: datetime | None = None
    destination: str | None = None  # a failed attempt at it (router.records.destevents)

    def conditions(self) -> list[ColumnElement[bool]]:
        """Every condition but the text search."""
        conds: list[ColumnElement[bool]] = []
        if self.source:
            conds.append(Event.source == self.source)
        if self.status in RUN_STATES:
            conds.append(Event.id.in_(select(Run.event_id).where(Run.status == self.status)))
        elif self.status:
            conds.append(Event.status == self.status)
        if self.destination:
            from router.records.destevents import failed_at

            conds.append(failed_at(self.destination))
        if self.since is not None:  # the id range lets the primary key find the start
            since = as_utc(self.since)
            conds += [Event.id >= id_floor(since - timedelta(seconds=1)), Event.received_at >= since]
        return conds


@dataclass
class EventPage:
    """A page of events, newest first, and the cursor of the next (older) page."""

    events: list[Any]  # Event rows (summary columns, plus headers and body when asked)
    next: str | None
    scanned: int | None = None  # with a text search: how many events this page's scan read


def _like(column: Any, text: str) -> ColumnElement[bool]:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return cast(column, Text).ilike(f"%{escaped}%", escape="\\")


def _columns(query: Select[Any], content: bool) -> Select[Any]:
    columns = [*_SUMMARY, Event.headers, Event.body] if content else list(_SUMMARY)
    return query.options(load_only(*columns))


async def list_events(
    session: AsyncSession,
    f: EventFilter,
    *,
    limit: int = 50,
    before: str | None = None,
    after: str | None = None,
    content: bool = False,
) -> EventPage:
    """Events matching ``f``, newest first: older than ``before`` (a page's ``next``), or newer than ``after``.

    ``after`` (live updates) gives the oldest ``limit`` events newer than it, still shown newest first,
    so that a burst is picked up over several polls without a gap. ``content`` also loads headers and body.
    """
    conds = f.conditions()
    if before:
        conds.append(Event.id < before)
    if after:
        conds.append(Event.id > after)
    scanned: int | None = None
    window_end: str | None = None
    if f.text:  # the LIKE runs over the newest SEARCH_SCAN events only (the LIMIT keeps it inside)
        order = Event.id.asc() if after else Event.id.desc()
        ids = select(Event.id).where(*conds).order_by(order).limit(SEARCH_SCAN).subquery()
        scanned, window_end = (
            await session.execute(
                select(func.count(), func.max(ids.c.id) if after else func.min(ids.c.id)).select_from(ids)
            )
        ).one()
        window = select(Event.id, Event.body).where(*conds).order_by(order).limit(SEARCH_SCAN).subquery()
        found = select(window.c.id).where(_like(window.c.body, f.text))
        found = found.order_by(window.c.id.asc() if after else window.c.id.desc()).limit(limit + 1)
        conds = [Event.id.in_(found)]
    query = select(Event).where(*conds).limit(limit + 1)
    query = query.order_by(Event.id.asc() if after else Event.id.desc())
    rows = list((await session.scalars(_columns(query, content))).all())
    page, more = rows[:limit], len(rows) > limit
    if after:
        page.reverse()
        return EventPage(page, None, scanned)
    following = page[-1].id if more and page else None
    if following is None and scanned == SEARCH_SCAN:  # the scan stopped early: carry on below it
        following = window_end
    return EventPage(page, following, scanned)


async def events_by_id(session: AsyncSession, ids: list[str], *, content: bool = False) -> list[Any]:
    """These events (summary columns, plus headers and body with ``content``), newest first."""
    query = select(Event).where(Event.id.in_(ids)).order_by(Event.id.desc())
    return list((await session.scalars(_columns(query, content))).all())


async def load_event(session: AsyncSession, event_id: str) -> Event | None:
    """One event with its runs, their steps and every attempt."""
    query = (
        select(Event)
        .where(Event.id == event_id)
        .options(selectinload(Event.runs).selectinload(Run.steps).selectinload(RunStep.attempts))
    )
    return (await session.scalars(query)).first()
