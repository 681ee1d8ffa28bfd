"""One poll of one source, end to end: lease, fetch the pages, store events and cursor together, queue routing.

Used by the workers' ``poll_source`` job, by ``router poll SOURCE --once`` and (fetching nothing) by the
schedule ticks. The order is the guarantee:

1. take the source's lease (one poll of a source at a time, however many workers);
2. fetch the pages (nothing stored yet: a crash here re-fetches at the next poll);
3. one transaction: the new events (deduplicated by the events table's ``(source, dedupe_key)``
   index, shared with webhooks), the cursor, the poll's record, and the lease released — only if the
   lease is still this poll's;
4. queue the new events for routing (``router.pipeline.queue.events_stored``); if that is lost, the sweep routes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from router.pipeline import queue
from router.pipeline.ingest import Incoming, new_event_row
from router.pipeline.outbound import redact_headers
from router.polling import store
from router.polling.compile import CompiledPoll, CompiledSchedule
from router.polling.fetch import Fetch, Found, greater, http_fetch, run_pass, template_context
from router.polling.nextstate import mask, next_state, unmask
from router.polling.store import Lease, LeaseLost
from router.polling.timing import ticks_between
from router.records.models import PollState, new_id, utcnow
from router.rules.compiled import CompiledSource, RuleSet
from router.settings import Settings

log = structlog.get_logger("router.polling")
MAX_CATCH_UP = 100


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class PollDeps:
    """What a poll needs: the database, the outgoing client, settings, and Redis to queue routing."""

    engine: AsyncEngine
    settings: Settings
    http: Any = None
    redis: Any = None
    holder: str = field(default_factory=default_holder)
    clock: Callable[[], datetime] = utcnow
    fetch: Fetch | None = None  # default: router.pipeline.outbound.send through ``http``


@dataclass
class PollReport:
    """What one poll did (also what `router poll` prints)."""

    source: str
    kind: str
    outcome: str  # ok | not_modified | partial | failed | busy | not_due | lease_lost | dry_run
    pages: int = 0
    items: int = 0
    new: list[str] = field(default_factory=list)
    duplicates: int = 0
    found: list[Found] = field(default_factory=list)
    would_emit: list[Found] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    duration_ms: float = 0.0
    cursor: Any = None
    next_poll_at: datetime | None = None
    status: int | None = None


def event_row(source: CompiledSource, poll: CompiledPoll, found: Found, secrets: Mapping[str, str]) -> dict[str, Any]:
    """An event for one new item: the item is the body; headers and query describe the page it came from."""
    request = Incoming(
        source=source.id,
        method=str(poll.request.get("method") or "GET"),
        path=str(mask(found.url, secrets))[:2048],
        headers=mask(redact_headers(found.headers), secrets),
        query=mask(found.query, secrets),
        raw=json.dumps(found.item, ensure_ascii=False).encode(),
    )
    return new_event_row(source, request, found.item, dedupe=found.key, via=poll.kind)


def in_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Event ids (ULIDs) made in the same millisecond do not sort as made: hand them out again in item order."""
    for row, event_id in zip(rows, sorted(r["id"] for r in rows), strict=True):
        row["id"] = event_id
    return rows


async def poll_once(
    deps: PollDeps,
    source: CompiledSource,
    ruleset: RuleSet,
    *,
    now: datetime | None = None,
    trigger: str = "schedule",
    force: bool = False,
    dry_run: bool = False,
) -> PollReport:
    """Poll the source (or fire its schedule) once, if it is due (or ``force``) and no other poll holds it."""
    pull = source.pull
    if pull is None:
        raise ValueError(f"source {source.id!r} is a webhook source: nothing to poll")
    now = now or deps.clock()
    if dry_run:
        assert isinstance(pull, CompiledPoll), "a schedule has nothing to fetch"
        return await _dry_run(deps, source, pull, ruleset, now)
    await store.sync_states(deps.engine, {source.id: pull}, now)
    lease = await store.take_lease(deps.engine, source.id, deps.holder, now, deps.settings.poll_lease, force=force)
    if lease is None:
        state = await store.read_state(deps.engine, source.id)
        busy = state is not None and state.lease_until is not None and state.lease_until >= now
        return PollReport(source.id, pull.kind, "busy" if busy else "not_due")
    try:
        if isinstance(pull, CompiledSchedule):
            return await _tick(deps, source, pull, lease, now, trigger)
        return await _poll(deps, source, pull, ruleset, lease, now, trigger)
    except LeaseLost as exc:
        log.warning("poll_lease_lost", source=source.id, error=str(exc))
        return PollReport(source.id, pull.kind, "lease_lost", error=str(exc))
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.shield(store.release_lease(deps.engine, lease))
        raise


async def _heartbeat(deps: PollDeps, lease: Lease, lost: list[bool]) -> None:
    """Renew the lease every third of its length; a renewal that finds it gone stops the poll."""
    seconds = deps.settings.poll_lease
    while True:
        await asyncio.sleep(seconds / 3)
        try:
            if not await store.renew_lease(deps.engine, lease, deps.clock() + timedelta(seconds=seconds)):
                lost.append(True)
                return
        except Exception as exc:  # the database blinked: try again at the next beat, the lease outlives two
            log.warning("poll_lease_renewal_failed", source=lease.source, error=str(exc))


def pass_budget(settings: Settings, poll: CompiledPoll) -> float:
    """How long one poll may keep fetching pages: its job must end within ROUTER_JOB_TIMEOUT."""
    return max(1.0, settings.job_timeout * 0.8 - poll.timeout)


async def _poll(
    deps: PollDeps,
    source: CompiledSource,
    poll: CompiledPoll,
    ruleset: RuleSet,
    lease: Lease,
    now: datetime,
    trigger: str,
) -> PollReport:
    secrets = ruleset.secrets
    state = await store.read_state(deps.engine, source.id)
    assert state is not None
    started = time.monotonic()
    ctx = template_context(secrets, source.id, state.cursor, state.created_at.timestamp(), now.timestamp())
    lost: list[bool] = []
    beat = asyncio.create_task(_heartbeat(deps, lease, lost))
    try:
        result = await run_pass(
            poll,
            ctx,
            deps.fetch or http_fetch(deps.http),
            resume=unmask(state.resume, secrets),
            etag=state.etag,
            etag_key=state.etag_key,
            budget=pass_budget(deps.settings, poll),
            seen=lambda keys: store.stored_keys(deps.engine, source.id, keys),
            lost=lambda: bool(lost),
        )
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    finished = deps.clock()
    values, outcome = next_state(poll, state, result, now, finished, secrets)
    rows = in_order([event_row(source, poll, f, secrets) for f in result.found])
    report = PollReport(
        source.id,
        poll.kind,
        outcome,
        pages=result.pages,
        items=result.items,
        found=result.found,
        error=mask(result.error, secrets),
        notes=list(result.notes),
        duration_ms=round((time.monotonic() - started) * 1000, 1),
        cursor=values.get("cursor", state.cursor),
        next_poll_at=values["next_poll_at"],
        status=result.status,
    )
    if state.resume and result.error and result.permanent and values.get("resume") is None:
        report.notes.append("the page the last poll stopped at is refused for good; the next poll starts over")
    run = _run_record(source.id, poll.kind, trigger, deps.holder, now, report)
    stored = await store.commit(deps.engine, lease, values, rows, run)
    report.new = [eid for eid, dup in stored if not dup]
    report.duplicates = len(stored) - len(report.new)
    (log.warning if report.error else log.info)(
        "poll_done",
        source=source.id,
        kind=poll.kind,
        outcome=outcome,
        pages=report.pages,
        items=report.items,
        new=len(report.new),
        error=report.error,
    )
    await _route(deps, report.new)
    return report


def _run_record(
    source: str, kind: str, trigger: str, holder: str, started: datetime, report: PollReport
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "source": source,
        "kind": kind,
        "trigger": trigger,
        "holder": holder[:200],
        "started_at": started,
        "duration_ms": report.duration_ms,
        "pages": report.pages,
        "items": report.items,
        "new_events": 0,  # set by store.commit from what the insert kept
        "outcome": report.outcome,
        "status": report.status,
        "error": report.error,
        "note": "; ".join(report.notes) or None,
        "cursor": report.cursor,
    }


async def _route(deps: PollDeps, ids: list[str]) -> None:
    if not ids or deps.redis is None:
        return
    try:
        await queue.events_stored(deps.redis, ids)
    except Exception as exc:  # Redis away: the events are stored; the sweep queues them later
        log.warning("poll_enqueue_failed", events=len(ids), error=str(exc))


async def _tick(
    deps: PollDeps, source: CompiledSource, schedule: CompiledSchedule, lease: Lease, now: datetime, trigger: str
) -> PollReport:
    state = await store.read_state(deps.engine, source.id)
    assert state is not None
    started = time.monotonic()
    last = state.last_tick_at or state.created_at
    limit = MAX_CATCH_UP if schedule.catch_up == "all" else 1
    ticks, total = ticks_between(schedule.timing, last, now, limit)
    report = PollReport(source.id, "schedule", "ok" if ticks else "not_due")
    if not ticks:
        await store.release_lease(deps.engine, lease)
        return report
    emit = ticks
    if schedule.catch_up == "none" and (total > 1 or (now - ticks[-1]).total_seconds() > 120):
        emit = []
        report.notes.append(f"{total} tick(s) missed while no worker ran; catch_up: none skips them")
    elif total > len(emit):
        missed = total - len(emit)
        report.notes.append(f"{missed} earlier tick(s) missed while no worker ran (catch_up: {schedule.catch_up})")
    rows = in_order([_tick_row(source, schedule, t, total - len(emit) if t is emit[-1] else 0) for t in emit])
    report.items = len(emit)
    report.duration_ms = round((time.monotonic() - started) * 1000, 1)
    report.next_poll_at = schedule.timing.next_after(ticks[-1])
    values = {
        "last_tick_at": ticks[-1],
        "last_poll_at": now,
        "last_success_at": now,
        "next_poll_at": report.next_poll_at,
        "failures": 0,
        "last_error": None,
    }
    run = _run_record(source.id, "schedule", trigger, deps.holder, now, report)
    stored = await store.commit(deps.engine, lease, values, rows, run)
    report.new = [eid for eid, dup in stored if not dup]
    report.duplicates = len(stored) - len(report.new)
    log.info("schedule_fired", source=source.id, ticks=len(emit), new=len(report.new))
    await _route(deps, report.new)
    return report


def _tick_row(source: CompiledSource, schedule: CompiledSchedule, tick: datetime, missed: int) -> dict[str, Any]:
    from zoneinfo import ZoneInfo

    tz = getattr(schedule.timing, "timezone", "UTC")
    body = {
        "tick": tick.isoformat().replace("+00:00", "Z"),
        "local": tick.astimezone(ZoneInfo(tz)).isoformat(),
        "timezone": tz,
        "schedule": schedule.timing.describe(),
        "missed": missed,
    }
    request = Incoming(source.id, "SCHEDULE", "", {}, {}, json.dumps(body).encode())
    return new_event_row(source, request, body, dedupe=f"tick:{body['tick']}", via="schedule")


async def _dry_run(
    deps: PollDeps, source: CompiledSource, poll: CompiledPoll, ruleset: RuleSet, now: datetime
) -> PollReport:
    """Fetch as a poll would and say what it would emit; store nothing, take no lease, move no cursor."""
    state = await store.read_state(deps.engine, source.id)
    if state is None:  # not polled yet: as its first poll would (a dry run writes nothing, not even this)
        state = PollState(source=source.id, kind=poll.kind, created_at=now, cursor=None, resume=None, pass_cursor=None)
    elif state.spec_hash != poll.spec_hash:  # the block changed: the next poll starts a fresh pass
        state.resume = state.pass_cursor = None
    started = time.monotonic()
    ctx = template_context(ruleset.secrets, source.id, state.cursor, state.created_at.timestamp(), now.timestamp())
    result = await run_pass(
        poll,
        ctx,
        deps.fetch or http_fetch(deps.http),
        resume=unmask(state.resume, ruleset.secrets),
        budget=pass_budget(deps.settings, poll),
        seen=lambda keys: store.stored_keys(deps.engine, source.id, keys),
    )
    known = await store.stored_keys(deps.engine, source.id, [f.key for f in result.found])
    report = PollReport(
        source.id,
        poll.kind,
        "dry_run",
        pages=result.pages,
        items=result.items,
        found=result.found,
        would_emit=[f for f in result.found if f.key not in known],
        duplicates=len(known),
        error=mask(result.error, ruleset.secrets),
        notes=result.notes,
        duration_ms=round((time.monotonic() - started) * 1000, 1),
        cursor=greater(state.pass_cursor, result.cursor) if result.complete else state.cursor,
        status=result.status,
    )
    return report
