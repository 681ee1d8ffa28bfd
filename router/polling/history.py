"""What the UI, the API and ``/health`` read about pulled sources: their state and each poll.

A source is **failing** once ``FAILING_AFTER`` polls in a row have failed, and **overdue** when it is
well past due with no poll running (no worker is polling it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from router.polling.compile import Pull
from router.records.models import PollRun, PollState
from router.records.serialize import fields, iso
from router.rules.compiled import CompiledSource, RuleSet

FAILING_AFTER = 3
MIN_OVERDUE = 60.0  # seconds past due before a source counts as overdue (at least twice its interval)


@dataclass(frozen=True)
class Health:
    status: str  # ok | failing | overdue | new
    reason: str = ""


def health_of(state: Any, pull: Pull, now: datetime) -> Health:
    if state is None:
        return Health("new", "not polled yet")
    if (state.failures or 0) >= FAILING_AFTER:
        return Health("failing", f"{state.failures} polls in a row failed: {state.last_error}")
    leased = state.lease_until is not None and state.lease_until >= now
    grace = timedelta(seconds=max(MIN_OVERDUE, 2 * pull.timing.interval(now)))
    if state.next_poll_at is not None and state.next_poll_at < now - grace and not leased:
        return Health("overdue", f"due since {state.next_poll_at.isoformat()}; is a worker running?")
    if state.last_poll_at is None and pull.kind != "schedule":
        return Health("new", "not polled yet")
    return Health("ok")


def state_dict(state: Any, pull: Pull, now: datetime) -> dict[str, Any]:
    """A source's poll state as shown (the API's ``state``)."""
    health = health_of(state, pull, now)
    out: dict[str, Any] = {
        "kind": pull.kind,
        "schedule": pull.timing.describe(),
        "health": health.status,
        "problem": health.reason or None,
    }
    if state is None:
        keys = ("cursor", "next_poll_at", "last_poll_at", "last_success_at", "last_tick_at", "last_error")
        return (
            out
            | dict.fromkeys(keys)
            | {"failures": 0, "polling_now": None, "unfinished_pass": None}
            | {"first_seen_at": None}
        )
    leased = state.lease_until is not None and state.lease_until >= now
    return out | {
        **fields(state, "cursor next_poll_at last_poll_at last_success_at last_tick_at failures last_error"),
        "polling_now": state.lease_holder if leased else None,
        "unfinished_pass": (state.resume or {}).get("page") if state.resume else None,
        "first_seen_at": iso(state.created_at),
    }


def poll_dict(run: Any) -> dict[str, Any]:
    return {
        **fields(run, "id started_at kind trigger"),
        "worker": run.holder,
        **fields(run, "outcome pages items new_events duration_ms status error note cursor"),
    }


async def states(engine: AsyncEngine, ids: Iterable[str]) -> dict[str, Any]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(PollState).where(PollState.source.in_(list(ids))))).all()
    return {row.source: row for row in rows}


async def polls(engine: AsyncEngine, source: str, *, limit: int = 50, before: str | None = None) -> list[Any]:
    """The source's polls, newest first (older than ``before``, a poll id, when given)."""
    query = select(PollRun).where(PollRun.source == source)
    if before:
        query = query.where(PollRun.id < before)
    async with engine.connect() as conn:
        return list((await conn.execute(query.order_by(PollRun.id.desc()).limit(limit))).all())


def pulled(ruleset: RuleSet) -> dict[str, CompiledSource]:
    return {s.id: s for s in ruleset.sources.values() if s.pull is not None}


async def health_check(engine: AsyncEngine, ruleset: RuleSet, now: datetime) -> dict[str, Any]:
    """``/health``'s ``polls``: ok unless a pulled source is failing or overdue."""
    sources = pulled(ruleset)
    found = await states(engine, sources) if sources else {}
    problems: list[dict[str, Any]] = []
    for sid, source in sources.items():
        assert source.pull is not None
        health = health_of(found.get(sid), source.pull, now)
        if health.status in ("failing", "overdue"):
            problems.append({"source": sid, "health": health.status, "problem": health.reason})
    return {"ok": not problems, "sources": len(sources), "problems": problems}


def by_health(views: Mapping[str, dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for view in views.values():
        counts[view["health"]] = counts.get(view["health"], 0) + 1
    return counts
