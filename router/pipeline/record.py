"""Recording (stage 7): the statements that write a step's outcome and attempt, a run's state and its event's.

The ledger writer (router/pipeline/ledger.py) group-commits these units, in ``LEDGER_ORDER``; the
deliverer (router/pipeline/delivery.py) builds them with ``save_step``, ``close_run`` and ``settle_event``.
A step's record is committed before the next step starts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Update, bindparam, exists, insert, update

from router.pipeline.destinations import Hold
from router.pipeline.ledger import Op
from router.pipeline.match import redact
from router.records.models import Attempt, Event, Run, RunStep, utcnow
from router.records.status import (
    EVENT_OF_RUN,
    RUN_FAILED,
    RUN_TERMINAL,
    AttemptOutcome,
    EventStatus,
    RunStatus,
)


def _set_by_id(model: Any, *columns: str) -> Update:
    """``UPDATE`` one row of ``model`` by its id (parameter ``b_id``), each column from the parameter ``b_{column}``."""
    return update(model).where(model.id == bindparam("b_id")).values({c: bindparam(f"b_{c}") for c in columns})


# Hot statements, built once: building and cache-keying a statement per call cost more than running it.
_INSERT_ATTEMPT = insert(Attempt)
_SAVE_STEP = _set_by_id(
    RunStep,
    "status",
    "error",
    "next_attempt_at",
    "note",
    "rendered",
    "output",
    "started_at",
    "finished_at",
    "attempts_count",
)
_CLOSE_RUN = _set_by_id(Run, "status", "error", "finished_at", "next_attempt_at", "job_id")
_CLOSE_EVENT = (
    update(Event)
    .where(Event.id == bindparam("b_id"), Event.status == EventStatus.ROUTED)
    .values(status=bindparam("b_status"))
)
# An event's state from its runs' (an event with several runs is settled after each of them ends).
_ANY_FAILED = exists().where(Run.event_id == bindparam("b_id"), Run.status.in_(RUN_FAILED))
_ANY_OPEN = exists().where(Run.event_id == bindparam("b_id"), Run.status.not_in(RUN_TERMINAL))
_SETTLE_FAILED = (
    update(Event)
    .where(Event.id == bindparam("b_id"), Event.status.in_((EventStatus.ROUTED, EventStatus.SUCCEEDED)), _ANY_FAILED)
    .values(status=EventStatus.FAILED)
)
_SETTLE_SUCCEEDED = (
    update(Event)
    .where(Event.id == bindparam("b_id"), Event.status == EventStatus.ROUTED, ~_ANY_OPEN, ~_ANY_FAILED)
    .values(status=EventStatus.SUCCEEDED)
)
# The order the ledger writer commits these in when it merges many units into one transaction.
LEDGER_ORDER = (_INSERT_ATTEMPT, _SAVE_STEP, _CLOSE_RUN, _CLOSE_EVENT, _SETTLE_FAILED, _SETTLE_SUCCEEDED)

SKIPPED_OUTPUT: dict[str, Any] = {"status": None, "headers": {}, "body": None, "skipped": True}


@dataclass
class StepRow:
    """A run step as stored: enough to resume it."""

    id: str
    step_id: str
    status: str
    idempotency_key: str
    output: Any = None
    attempts_count: int = 0


@dataclass
class RunPlan:
    """A run to execute: its steps in order, and the event it belongs to."""

    id: str
    rule_id: str
    event: dict[str, Any]
    chain_depth: int
    steps: list[StepRow]
    finishes_event: bool = False  # the event's only run: write the event's state with the run's


def save_step(row: StepRow, o: Outcome) -> list[Op]:
    """The statements recording a step's outcome (and its attempt, if one was made)."""
    row.status, row.output = o.status, o.output
    ops: list[Op] = []
    if o.tried:
        row.attempts_count += 1
        response = o.output if isinstance(o.output, dict) else {}
        body = response.get("snippet", response.get("body"))
        ops.append(
            (
                _INSERT_ATTEMPT,
                {
                    "run_step_id": row.id,
                    "number": row.attempts_count,
                    "started_at": o.started,
                    "duration_ms": round((time.perf_counter() - o.t0) * 1000, 3),
                    "request": o.request,
                    "response_status": response.get("status"),
                    "response_body": None if body is None else (body if isinstance(body, str) else _json(body))[:4096],
                    "outcome": AttemptOutcome.FAILED if o.error else AttemptOutcome.SUCCEEDED,
                    "error": o.error,
                    "retryable": o.retryable,
                },
            )
        )
    ops.append(
        (
            _SAVE_STEP,
            {
                "b_id": row.id,
                "b_status": o.status,
                "b_error": o.error,
                "b_rendered": o.rendered,
                "b_output": o.output,
                "b_started_at": o.started,
                "b_finished_at": utcnow(),
                "b_attempts_count": row.attempts_count,
                "b_next_attempt_at": o.next_attempt_at,
                "b_note": o.note,
            },
        )
    )
    return ops


def close_run(
    plan: RunPlan,
    status: str,
    error: str | None,
    next_attempt_at: datetime | None = None,
    job_id: str | None = None,
) -> list[Op]:
    """The statements setting a run's state (and its event's, when the run is the event's only one)."""
    done = status in RUN_TERMINAL
    ops: list[Op] = [
        (
            _CLOSE_RUN,
            {
                "b_id": plan.id,
                "b_status": status,
                "b_error": error,
                "b_finished_at": utcnow() if done else None,
                "b_next_attempt_at": next_attempt_at,
                "b_job_id": job_id,
            },
        )
    ]
    if plan.finishes_event and done:
        ops.append((_CLOSE_EVENT, {"b_id": plan.event["id"], "b_status": EVENT_OF_RUN[RunStatus(status)]}))
    return ops


def settle_event(event_id: str) -> list[Op]:
    """The statements setting an event's state from its runs' (after their commits)."""
    return [(_SETTLE_FAILED, {"b_id": event_id}), (_SETTLE_SUCCEEDED, {"b_id": event_id})]


@dataclass
class Outcome:
    """How one step ended, before it is recorded."""

    status: str
    started: datetime
    t0: float
    rendered: Any = None
    output: Any = None
    request: Any = None
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    next_attempt_at: datetime | None = None
    tried: bool = False
    hold: Hold | None = None
    note: str | None = None  # an attempt was made (an action ran, or rendering failed)

    def redact(self, secrets: Mapping[str, str]) -> None:
        self.rendered = redact(self.rendered, secrets)
        self.output = redact(self.output, secrets)
        self.request = redact(self.request, secrets)
        self.error = redact(self.error, secrets)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
