"""Dead letters, replay and retry, as plain functions over the database and the queue.

- ``replay_event``: route a stored event again through the rules in force (new runs).
- ``retry_run``: resume a failed or dead run at its failed step (stored outputs of earlier steps), or
  start it over as a new run with the current version of its rule.
- many runs at once (dead letters, bulk retry): router/records/deadletters.py.

The side-effect ledger: a step whose idempotency key (event, rule, step) already succeeded is not
sent again by a replay; it is recorded as ``skipped`` with a note and its stored output, unless the
caller asks to ``resend``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from router.access import audit
from router.errors import ReplayError, RetryError
from router.pipeline import queue, runwait
from router.pipeline.match import EVENT_COLUMNS, build_context, event_from_row, match_rules
from router.pipeline.queue import Enqueue, JobId
from router.records import retryplan
from router.records.models import Event, Run, RunStep, new_id, utcnow
from router.records.status import RUN_FAILED, EventStatus, RunStatus, StepStatus
from router.rules.compiled import CompiledRule, RuleSet

SIDE_EFFECTS = ("slack", "email", "http", "emit")


async def _event(conn: AsyncConnection, event_id: str, error: type[ReplayError] = ReplayError) -> dict[str, Any]:
    row = (await conn.execute(select(*EVENT_COLUMNS).where(Event.id == event_id))).first()
    if row is None:
        raise error(404, f"no event {event_id!r}")
    return event_from_row(row)


async def _ledger(conn: AsyncConnection, keys: list[str]) -> dict[str, tuple[str, Any]]:
    """Idempotency keys already sent: key → (run id, stored output)."""
    if not keys:
        return {}
    rows = await conn.execute(
        select(RunStep.idempotency_key, RunStep.run_id, RunStep.output).where(
            RunStep.idempotency_key.in_(keys), RunStep.status == StepStatus.SUCCEEDED
        )
    )
    return {k: (run_id, output) for k, run_id, output in rows}


async def _new_run(
    conn: AsyncConnection,
    event: dict[str, Any],
    rule: CompiledRule,
    version: str,
    *,
    resend: bool,
    replay_of: str | None,
) -> tuple[str, int]:
    """Insert a run (pending) for the rule; steps already sent are skipped unless ``resend``.

    Returns the run id and how many sends the ledger skipped.
    """
    run_id, now = new_id(), utcnow()
    keys = [f"{event['id']}:{rule.id}:{step.id}" for step in rule.steps]
    sent = {} if resend else await _ledger(conn, keys)
    await conn.execute(
        insert(Run),
        [
            {
                "id": run_id,
                "event_id": event["id"],
                "rule_id": rule.id,
                "rule_location": rule.location,
                "ruleset_version": version,
                "status": RunStatus.PENDING,
                "created_at": now,
                "next_attempt_at": now,
                "job_id": JobId.attempt(run_id, 1),
                "replay_of": replay_of,
            }
        ],
    )
    steps = []
    for position, (step, key) in enumerate(zip(rule.steps, keys, strict=True)):
        done = sent.get(key)
        steps.append(
            {
                "id": new_id(),
                "run_id": run_id,
                "position": position,
                "step_id": step.id,
                "action": step.action,
                "status": StepStatus.SKIPPED if done else StepStatus.PENDING,
                "idempotency_key": f"{key}:{run_id}" if resend else key,
                "attempts_count": 0,
                "output": done[1] if done else None,
                "note": f"already sent by run {done[0]}; not sent again (ask to resend)" if done else None,
            }
        )
    await conn.execute(insert(RunStep), steps)
    return run_id, sum(1 for s in steps if s["status"] == StepStatus.SKIPPED)


async def replay_event(
    engine: AsyncEngine,
    enqueue: Enqueue,
    ruleset: RuleSet,
    event_id: str,
    *,
    resend: bool = False,
    actor: str | None = None,
) -> dict[str, Any]:
    """Route a stored event again through the rules in force; each match is a new run.

    With ``actor``, an audit entry ``event_replay`` is written in the same transaction.
    """
    async with engine.begin() as conn:
        event = await _event(conn, event_id)
        matched = match_rules(ruleset, event["source"], build_context(event, ruleset.secrets))
        # A run of the same rule still waiting to retry would deliver too: it ends here, replaced by the new run.
        superseded, busy = await runwait.supersede_waiting(conn, event_id, [r.id for r in matched], "a replay")
        created = []
        skipped = 0
        for rule in matched:
            run_id, n = await _new_run(conn, event, rule, ruleset.version, resend=resend, replay_of=None)
            created.append({"id": run_id, "rule_id": rule.id})
            skipped += n
        if created:
            await conn.execute(
                update(Event).where(Event.id == event_id).values(status=EventStatus.ROUTED, matched=len(created))
            )
        if actor is not None:
            detail = {"runs": [r["id"] for r in created], "resend": resend, "skipped_sends": skipped}
            if superseded:
                detail["superseded"] = [r["id"] for r in superseded]
            await audit.record_on(conn, actor, "event_replay", event_id, detail)
    for run in created:
        await queue.enqueue_run(enqueue, run["id"], job_id=JobId.attempt(run["id"], 1))
    return {
        "event_id": event_id,
        "runs": created,
        "skipped_sends": skipped,
        "resend": resend,
        "superseded": superseded,
        "still_running": busy,
    }


async def retry_run(
    engine: AsyncEngine,
    enqueue: Enqueue,
    ruleset: RuleSet,
    run_id: str,
    *,
    start: bool = False,
    resend: bool = False,
    actor: str | None = None,
) -> dict[str, Any]:
    """Retry a failed or dead run: resume at its failed step, or (``start``) as a new run of its rule.

    With ``actor``, an audit entry ``run_retry`` is written in the same transaction.
    """
    async with engine.begin() as conn:
        run = (
            await conn.execute(
                select(Run.id, Run.event_id, Run.rule_id, Run.status, Event.test_send)
                .join(Event, Event.id == Run.event_id)
                .where(Run.id == run_id)
            )
        ).first()
        if run is None:
            raise RetryError(404, f"no run {run_id!r}")
        if run.status not in RUN_FAILED:
            raise RetryError(409, f"run {run_id} is {run.status}; only failed or dead runs are retried")
        rule = ruleset.rules.get(run.rule_id)
        (planned,) = await retryplan.plan(conn, [run], ruleset, start=start)
        if planned["cannot"]:
            raise RetryError(409, f"run {run_id}: {planned['cannot']}")
        if start:
            assert rule is not None
            event = await _event(conn, run.event_id, RetryError)
            new_id_, skipped = await _new_run(conn, event, rule, ruleset.version, resend=resend, replay_of=run_id)
            target, job_id = new_id_, JobId.attempt(new_id_, 1)
        else:
            attempt = await conn.scalar(select(func.max(RunStep.attempts_count)).where(RunStep.run_id == run_id))
            await conn.execute(
                update(RunStep)
                .where(RunStep.run_id == run_id, RunStep.status.in_(RUN_FAILED))
                .values(status=StepStatus.PENDING, next_attempt_at=None)
            )
            job_id = JobId.run(run_id, "retry", (attempt or 0) + 1)
            await conn.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(status=RunStatus.PENDING, error=None, finished_at=None, next_attempt_at=utcnow(), job_id=job_id)
            )
            target, skipped = run_id, 0
        await conn.execute(update(Event).where(Event.id == run.event_id).values(status=EventStatus.ROUTED))
        if actor is not None:
            detail = {"from": "start" if start else "failed_step", "resend": resend, "run_id": target}
            await audit.record_on(conn, actor, "run_retry", run_id, detail)
    await queue.enqueue_run(enqueue, target, job_id=job_id)
    return {"run_id": target, "retry_of": run_id, "from": "start" if start else "failed_step", "skipped_sends": skipped}


__all__ = ["ReplayError", "replay_event", "retry_run"]
