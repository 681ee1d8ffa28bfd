"""Dead letters and bulk retry: the failed and dead runs a filter selects, counted, listed and retried.

``preview`` counts what a ``bulk_retry`` would do and gives a token for exactly that selection; the
retry checks the token, then retries each run with router.records.replay.retry_run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from router.access import audit
from router.errors import NotConfirmed, ReplayError
from router.pipeline.queue import Enqueue
from router.records import retryplan
from router.records.models import Event, Run, RunStep
from router.records.replay import SIDE_EFFECTS, retry_run
from router.records.status import RUN_FAILED, StepStatus
from router.rules.compiled import RuleSet


@dataclass
class Filters:
    """Which runs a bulk operation covers."""

    rule: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    status: tuple[str, ...] = RUN_FAILED
    run_ids: tuple[str, ...] = ()  # only these runs (still only those matching the rest), e.g. ticked in the UI
    tests: bool = False  # include the runs of Send-test events (left out by default)

    def token(self, count: int) -> str:
        """A confirmation token for exactly this selection and count."""
        parts: list[Any] = [self.rule, self.source, str(self.since), str(self.until), self.status, count]
        if self.run_ids:
            parts.append(sorted(self.run_ids))
        if self.tests:
            parts.append("tests")
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """The selection, for the audit log."""
        out: dict[str, Any] = {"status": list(self.status)}
        for name in ("rule", "source", "since", "until"):
            if (value := getattr(self, name)) is not None:
                out[name] = str(value)
        if self.run_ids:
            out["run_ids"] = list(self.run_ids)
        if self.tests:
            out["tests"] = True
        return out


def _run_query(f: Filters) -> Any:
    query = select(Run.id, Run.event_id, Run.rule_id, Run.status, Event.test_send).join(Event, Event.id == Run.event_id)
    conds: list[ColumnElement[bool]] = [Run.status.in_(f.status)]
    if not f.tests:
        conds.append(Event.test_send.is_(False))
    if f.rule:
        conds.append(Run.rule_id == f.rule)
    if f.source:
        conds.append(Event.source == f.source)
    if f.since:
        conds.append(Event.received_at >= f.since)
    if f.until:
        conds.append(Event.received_at < f.until)
    if f.run_ids:
        conds.append(Run.id.in_(f.run_ids))
    return query.where(and_(*conds))


async def preview(
    engine: AsyncEngine, f: Filters, *, start: bool = False, ruleset: RuleSet | None = None
) -> dict[str, Any]:
    """How many runs a bulk retry covers, what it would do to each (``plans``: what it would send, or why it
    cannot be retried, e.g. its rule is no longer loaded), how many steps it would send, and how many
    completed sends starting over would repeat (they are skipped unless ``resend``)."""
    async with engine.connect() as conn:
        runs = (await conn.execute(_run_query(f))).all()
        repeats = 0
        plans = await retryplan.plan(conn, runs, ruleset if ruleset is not None else RuleSet(), start=start)
        steps = sum(p["steps"] for p in plans)
        if start and runs:
            repeats = (
                await conn.scalar(
                    select(func.count()).where(
                        RunStep.run_id.in_([r.id for r in runs]),
                        RunStep.status == StepStatus.SUCCEEDED,
                        RunStep.action.in_(SIDE_EFFECTS),
                    )
                )
                or 0
            )
    cannot = [p for p in plans if p["cannot"]]
    return {
        "runs": len(runs),
        "events": len({r.event_id for r in runs}),
        "retryable": len(runs) - len(cannot),
        "cannot": len(cannot),
        "plans": plans[:200],
        "steps_to_send": steps,
        "would_repeat_sends": repeats,
        "note": "completed sends are skipped unless resend is true"
        if start
        else "resuming at the failed step never repeats a completed step",
        "confirm": f.token(len(runs)),
    }


async def bulk_retry(
    engine: AsyncEngine,
    enqueue: Enqueue,
    ruleset: RuleSet,
    f: Filters,
    confirm: str,
    *,
    start: bool = False,
    resend: bool = False,
    actor: str | None = None,
) -> dict[str, Any]:
    """Retry every selected run, once ``confirm`` matches the preview's token for the same selection.

    With ``actor``, one audit entry ``runs_retry_bulk`` records the selection and the outcome.
    """
    async with engine.connect() as conn:
        runs = (await conn.execute(_run_query(f))).all()
    if confirm != f.token(len(runs)):
        raise NotConfirmed(
            409,
            f"confirmation does not match: the selection now has {len(runs)} run(s); preview "
            "again and confirm with the new token",
        )
    done, errors = [], []
    for run in runs:
        try:
            done.append(await retry_run(engine, enqueue, ruleset, run.id, start=start, resend=resend))
        except ReplayError as exc:
            errors.append({"run_id": run.id, "error": str(exc)})
    if actor is not None:
        detail = f.describe() | {
            "from": "start" if start else "failed_step",
            "resend": resend,
            "retried": len(done),
            "errors": len(errors),
        }
        async with engine.begin() as conn:
            await audit.record_on(conn, actor, "runs_retry_bulk", f"{len(done)} run(s)", detail)
    return {"retried": len(done), "errors": errors, "runs": [d["run_id"] for d in done]}


async def dead_letters(engine: AsyncEngine, f: Filters, limit: int = 100) -> list[dict[str, Any]]:
    """Failed and dead runs, newest first, with every attempt's error."""
    from router.records.models import Attempt

    async with engine.connect() as conn:
        runs = (
            await conn.execute(
                select(
                    Run.id,
                    Run.event_id,
                    Run.rule_id,
                    Run.status,
                    Run.error,
                    Run.finished_at,
                    Event.source,
                    Event.received_at,
                    Event.test_send,
                )
                .join(Event, Event.id == Run.event_id)
                .where(Run.id.in_(select(_run_query(f).subquery().c.id)))
                .order_by(Run.id.desc())
                .limit(limit)
            )
        ).all()
        ids = [r.id for r in runs]
        attempts = (
            (
                await conn.execute(
                    select(
                        RunStep.run_id,
                        RunStep.step_id,
                        Attempt.number,
                        Attempt.started_at,
                        Attempt.error,
                        Attempt.response_status,
                        Attempt.retryable,
                    )
                    .join(Attempt, Attempt.run_step_id == RunStep.id)
                    .where(RunStep.run_id.in_(ids))
                    .order_by(RunStep.position, Attempt.number)
                )
            ).all()
            if ids
            else []
        )
    by_run: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    for a in attempts:
        by_run[a.run_id].append(
            {
                "step": a.step_id,
                "number": a.number,
                "at": a.started_at.isoformat(),
                "error": a.error,
                "response_status": a.response_status,
                "retryable": a.retryable,
            }
        )
    return [
        {
            "run_id": r.id,
            "event_id": r.event_id,
            "rule_id": r.rule_id,
            "source": r.source,
            "status": r.status,
            "error": r.error,
            "received_at": r.received_at.isoformat(),
            "finished_at": r.finished_at.isoformat() if r.finished_at else None,
            "test_send": bool(r.test_send),
            "attempts": by_run[r.id],
        }
        for r in runs
    ]


__all__ = ["Filters", "bulk_retry", "dead_letters", "preview"]
