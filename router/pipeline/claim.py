"""Claiming received events and creating their runs, many events in one transaction.

A claim reads up to N ``received`` events and, in the same transaction, matches each against the rule
set in force, creates a run and its steps per matching rule, and gives each event its routing state
(``routed`` with its match count, or ``unmatched``): one write per event. Two workers never route the
same event: on PostgreSQL the read locks the rows and skips those another worker has locked
(``FOR UPDATE SKIP LOCKED``); on SQLite the transaction holds the database's write lock from its start
(``BEGIN IMMEDIATE``: router/records/transactor.py, router.records.db.write_transaction). A worker that dies mid-claim
leaves nothing behind: the transaction never committed, and the events are still ``received``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from router import logs
from router.pipeline.match import EVENT_COLUMNS, build_context, event_from_row, match_rules
from router.pipeline.record import RunPlan, StepRow
from router.records.models import Event, Run, RunStep, new_id, utcnow
from router.records.status import EventStatus, RunStatus, StepStatus
from router.rules.compiled import RuleSet

log = structlog.get_logger("router.claim")

COLUMNS = (*EVENT_COLUMNS, Event.chain_depth, Event.via)
_PICK_ONE = (
    select(*COLUMNS).where(Event.id == bindparam("b_id"), Event.status == EventStatus.RECEIVED).with_for_update()
)
_SET_ROUTED = (
    update(Event)
    .where(Event.id == bindparam("b_id"), Event.status == EventStatus.RECEIVED)
    .values(
        status=bindparam("b_status"),
        matched=bindparam("b_matched"),
        routed_at=bindparam("b_now"),
        ruleset_version=bindparam("b_version"),
    )
)
_INSERT_RUNS = insert(Run)
_INSERT_STEPS = insert(RunStep)


def pick_statement(limit: int) -> Any:
    """Up to ``limit`` received events, oldest first, locked (PostgreSQL) past those another worker holds."""
    return (
        select(*COLUMNS)
        .where(Event.status == EventStatus.RECEIVED)
        .order_by(Event.received_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


@dataclass
class Claimed:
    """What a claim took: the runs to execute, and how many events it routed."""

    plans: list[RunPlan] = field(default_factory=list)
    events: int = 0
    unmatched: int = 0


def claim_batch(conn: Connection, ruleset: RuleSet, limit: int) -> Claimed:
    """Claim and route up to ``limit`` received events (in the caller's write transaction)."""
    rows = conn.execute(pick_statement(limit)).all()
    return route(conn, rows, ruleset, utcnow())


def claim_one(conn: Connection, ruleset: RuleSet, event_id: str) -> Claimed | None:
    """Claim and route one event (in the caller's write transaction); None when it is not ``received``."""
    rows = conn.execute(_PICK_ONE, {"b_id": event_id}).all()
    if not rows:
        return None
    return route(conn, rows, ruleset, utcnow())


def route(conn: Connection, rows: Any, ruleset: RuleSet, now: datetime) -> Claimed:
    """Match claimed events, create their runs and steps, and record each event's routing state."""
    claimed = Claimed(events=len(rows))
    if not rows:
        return claimed
    runs: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    states: list[dict[str, Any]] = []
    for row in rows:
        event = event_from_row(row)
        matched = match_rules(ruleset, event["source"], build_context(event, ruleset.secrets))
        states.append(
            {
                "b_id": row.id,
                "b_status": EventStatus.ROUTED if matched else EventStatus.UNMATCHED,
                "b_matched": len(matched),
                "b_now": now,
                "b_version": ruleset.version,
            }
        )
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
                    "status": RunStatus.RUNNING,
                    "created_at": now,
                    "started_at": now,
                }
            )
            step_rows = []
            for position, step in enumerate(rule.steps):
                step_row = StepRow(new_id(), step.id, StepStatus.PENDING, f"{row.id}:{rule.id}:{step.id}")
                step_rows.append(step_row)
                steps.append(
                    {
                        "id": step_row.id,
                        "run_id": run_id,
                        "position": position,
                        "step_id": step.id,
                        "action": step.action,
                        "status": StepStatus.PENDING,
                        "idempotency_key": step_row.idempotency_key,
                        "attempts_count": 0,
                    }
                )
            event_plans.append(RunPlan(run_id, rule.id, event, row.chain_depth, step_rows))
        if len(event_plans) == 1:
            event_plans[0].finishes_event = True  # the event's state is written with its only run's
        claimed.plans.extend(event_plans)
        if logs.debugging():
            log.debug("event_routed", event_id=row.id, matched=len(matched))
    if runs:
        conn.execute(_INSERT_RUNS, runs)
        conn.execute(_INSERT_STEPS, steps)
    conn.execute(_SET_ROUTED, states)
    return claimed
