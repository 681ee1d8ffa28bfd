"""Claiming received events and creating their runs, many events in one transaction.

A claim is one ``UPDATE … RETURNING``: it marks up to N ``received`` events ``routed`` and returns them,
so two workers never route the same event (PostgreSQL skips rows another worker has locked; SQLite has
one writer at a time). In the same transaction each event is matched against the rule set in force, a
run and its steps are created per matching rule, and each event gets its final routing state
(``routed`` with its match count, or ``unmatched``). A worker that dies mid-claim leaves nothing behind:
the transaction never committed, and the events are still ``received``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from router.delivery import RunPlan, StepRow
from router.models import Event, Run, RunStep, new_id, utcnow
from router.routing import build_context, event_from_row, match_rules
from router.ruleset import RuleSet

log = structlog.get_logger("router.claim")

COLUMNS = (
    Event.id,
    Event.source,
    Event.received_at,
    Event.method,
    Event.path,
    Event.headers,
    Event.query,
    Event.body,
    Event.chain_depth,
)
_CLAIMED = {
    "status": "routed",
    "matched": 0,
    "routed_at": bindparam("b_now"),
    "ruleset_version": bindparam("b_version"),
}
_CLAIM_ONE = (
    update(Event)
    .where(Event.id == bindparam("b_id"), Event.status == "received")
    .values(**_CLAIMED)
    .returning(*COLUMNS)
)
_SET_ROUTED = (
    update(Event)
    .where(Event.id == bindparam("b_id"))
    .values(status=bindparam("b_status"), matched=bindparam("b_matched"))
)
_INSERT_RUNS = insert(Run)
_INSERT_STEPS = insert(RunStep)


def claim_statement(limit: int) -> Any:
    """Claim up to ``limit`` received events, oldest first."""
    pick = (
        select(Event.id)
        .where(Event.status == "received")
        .order_by(Event.received_at)
        .limit(limit)
        .with_for_update(skip_locked=True)  # PostgreSQL; SQLite has a single writer anyway
    )
    return update(Event).where(Event.id.in_(pick.scalar_subquery())).values(**_CLAIMED).returning(*COLUMNS)


@dataclass
class Claimed:
    """What a claim took: the runs to execute, and how many events it routed."""

    plans: list[RunPlan] = field(default_factory=list)
    events: int = 0
    unmatched: int = 0


async def claim_batch(conn: AsyncConnection, ruleset: RuleSet, limit: int) -> Claimed:
    """Claim and route up to ``limit`` received events (in the caller's transaction)."""
    now = utcnow()
    rows = (await conn.execute(claim_statement(limit), {"b_now": now, "b_version": ruleset.version})).all()
    return await route(conn, rows, ruleset, now)


async def claim_one(conn: AsyncConnection, ruleset: RuleSet, event_id: str) -> Claimed | None:
    """Claim and route one event; None when it is not (or no longer) ``received``."""
    now = utcnow()
    params = {"b_id": event_id, "b_now": now, "b_version": ruleset.version}
    rows = (await conn.execute(_CLAIM_ONE, params)).all()
    if not rows:
        return None
    return await route(conn, rows, ruleset, now)


async def route(conn: AsyncConnection, rows: Any, ruleset: RuleSet, now: datetime) -> Claimed:
    """Match claimed events, create their runs and steps, and record each event's routing state."""
    claimed = Claimed(events=len(rows))
    runs: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    states: list[dict[str, Any]] = []
    for row in rows:
        event = event_from_row(row)
        matched = match_rules(ruleset, event["source"], build_context(event, ruleset.secrets))
        states.append({"b_id": row.id, "b_status": "routed" if matched else "unmatched", "b_matched": len(matched)})
        if not matched:
            claimed.unmatched += 1
        event_plans = []
        for rule in matched:
            run_id = new_id()
            runs.append(
                {
                    "id": run_id,
                    "event_id": row.id,
                    "rule_id": rule.id,
                    "rule_location": rule.location,
                    "ruleset_version": ruleset.version,
                    "status": "running",
                    "created_at": now,
                    "started_at": now,
                }
            )
            step_rows = []
            for position, step in enumerate(rule.steps):
                step_row = StepRow(new_id(), step.id, "pending", f"{row.id}:{rule.id}:{step.id}")
                step_rows.append(step_row)
                steps.append(
                    {
                        "id": step_row.id,
                        "run_id": run_id,
                        "position": position,
                        "step_id": step.id,
                        "action": step.action,
                        "status": "pending",
                        "idempotency_key": step_row.idempotency_key,
                        "attempts_count": 0,
                    }
                )
            event_plans.append(RunPlan(run_id, rule.id, event, row.chain_depth, step_rows))
        if len(event_plans) == 1:
            event_plans[0].finishes_event = True  # the event's state is written with its only run's
        claimed.plans.extend(event_plans)
        log.debug("event_routed", event_id=row.id, matched=len(matched))
    if runs:
        await conn.execute(_INSERT_RUNS, runs)
        await conn.execute(_INSERT_STEPS, steps)
    await conn.execute(_SET_ROUTED, states)
    return claimed
