"""The worker's jobs: route an event and execute its runs; resume a run; sweep up work never enqueued.

Every state change is committed before the next begins, so a killed worker leaves a record that
says exactly where it stopped. Jobs are idempotent: running one twice does no work twice, and a
job for an event already routed resumes its unfinished runs.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import bindparam, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from router import logs
from router.pipeline import queue, runwait
from router.pipeline.claim import claim_one
from router.pipeline.match import EVENT_COLUMNS, event_from_row
from router.pipeline.queue import JobId
from router.pipeline.record import RunPlan, StepRow
from router.records.db import write_transaction
from router.records.models import Event, Run, RunStep, utcnow
from router.records.status import RUN_TERMINAL, EventStatus, RunStatus

if TYPE_CHECKING:
    from router.runtime import WorkerState

log = structlog.get_logger("router.jobs")

_EVENT_COLUMNS = (*EVENT_COLUMNS, Event.status, Event.chain_depth, Event.routed_at, Event.via)


_LOAD_EVENT = select(*_EVENT_COLUMNS).where(Event.id == bindparam("b_id"))


def _state(ctx: dict[str, Any]) -> WorkerState:
    state: WorkerState = ctx["state"]
    if state.redis is None:
        state.attach_redis(ctx.get("redis"))
    return state


async def process_event(ctx: dict[str, Any], event_id: str) -> int:
    """Route one stored event (a run per matching rule) and execute its runs.

    Workers claim new events in batches themselves (router/pipeline/consumer.py); this job routes one event on
    its own (a test send, the reconciler of a worker without a consumer). For an event already routed (a
    job re-run after a crash) the unfinished runs are resumed.
    """
    logs.bind(event_id=event_id)  # on every line of this job
    state = _state(ctx)
    ruleset = state.rules.current
    async with write_transaction(state.engine) as conn:
        claimed = await conn.run_sync(claim_one, ruleset, event_id)
        if claimed is not None:
            plans = claimed.plans
        else:  # already routed: resume its open runs (their event is settled from all its runs after)
            row = (await conn.execute(_LOAD_EVENT, {"b_id": event_id})).one_or_none()
            if row is None or row.status != EventStatus.ROUTED:
                return 0
            plans = await _open_runs(conn, event_from_row(row), row.chain_depth)
    if not plans:
        return 0
    await asyncio.gather(*(state.deliverer.run(plan, ruleset.rules.get(plan.rule_id), ruleset) for plan in plans))
    if not plans[0].finishes_event:
        await state.deliverer.settle_event(event_id)
    return len(plans)


async def _open_runs(
    conn: AsyncConnection, event: dict[str, Any], depth: int, run_ids: list[str] | None = None
) -> list[RunPlan]:
    """The event's runs not yet finished (or the given ones), with their steps, to resume them."""
    query = select(Run.id, Run.rule_id).where(Run.event_id == event["id"], Run.status.not_in(RUN_TERMINAL))
    if run_ids is not None:
        query = query.where(Run.id.in_(run_ids))
    runs = (await conn.execute(query.order_by(Run.id))).all()
    if not runs:
        return []
    step_rows = (
        await conn.execute(
            select(
                RunStep.run_id,
                RunStep.id,
                RunStep.step_id,
                RunStep.status,
                RunStep.idempotency_key,
                RunStep.output,
                RunStep.attempts_count,
            )
            .where(RunStep.run_id.in_([r.id for r in runs]))
            .order_by(RunStep.position)
        )
    ).all()
    await conn.execute(
        update(Run)
        .where(Run.id.in_([r.id for r in runs]), Run.status.not_in(RUN_TERMINAL))
        .values(status=RunStatus.RUNNING, next_attempt_at=utcnow())
    )
    by_run: dict[str, list[StepRow]] = {r.id: [] for r in runs}
    for s in step_rows:
        by_run[s.run_id].append(StepRow(s.id, s.step_id, s.status, s.idempotency_key, s.output, s.attempts_count))
    return [RunPlan(r.id, r.rule_id, event, depth, by_run[r.id]) for r in runs]


async def execute_run(ctx: dict[str, Any], run_id: str) -> str:
    """Resume one run (found pending or running by the sweep) at its first step not yet done."""
    logs.bind(run_id=run_id)  # on every line of this job
    state = _state(ctx)
    ruleset = state.rules.current
    async with state.engine.begin() as conn:
        if await runwait.superseded(conn, run_id, ctx.get("job_id"), state.settings.job_timeout + 15):
            return "superseded"  # an older job of a run hurried by Retry now: the recorded job carries it
        event_id = await conn.scalar(select(Run.event_id).where(Run.id == run_id))
        if event_id is None:
            return "missing"
        row = (await conn.execute(select(*_EVENT_COLUMNS).where(Event.id == event_id))).one()
        event = event_from_row(row)
        plans = await _open_runs(conn, event, row.chain_depth, [run_id])
    if not plans:
        return "done"
    status = await state.deliverer.run(plans[0], ruleset.rules.get(plans[0].rule_id), ruleset)
    await state.deliverer.settle_event(event_id)
    return status


async def sweep(ctx: dict[str, Any]) -> int:
    """The reconciler: enqueue work the database holds but no live job carries.

    - events stored but never routed (the enqueue after the commit was lost: Redis down or restarted);
    - runs whose retry is due but whose deferred job is gone (Redis restarted empty): re-enqueued under
      the job id they recorded, so a job still queued is not doubled;
    - runs left `pending` or `running` longer than a job may live (a worker killed mid-run);
    - events whose runs have all ended but whose own state was never set (a worker killed between the
      two commits).
    """
    state = _state(ctx)
    now = datetime.now(UTC)
    fresh = now - timedelta(seconds=max(2.0, state.settings.sweep_interval / 2))
    stale = now - timedelta(seconds=state.settings.job_timeout + 15)  # a live job would have ended by then
    async with state.engine.connect() as conn:
        events = (
            await conn.scalars(
                select(Event.id).where(Event.status == EventStatus.RECEIVED, Event.received_at < fresh).limit(5000)
            )
        ).all()
        due = (
            await conn.execute(
                select(Run.id, Run.job_id)
                .where(Run.status == RunStatus.RETRYING, Run.next_attempt_at < fresh)
                .limit(5000)
            )
        ).all()
        stuck = (
            await conn.execute(
                select(Run.id, Run.job_id)
                .where(
                    Run.status.in_((RunStatus.PENDING, RunStatus.RUNNING)),
                    func.coalesce(Run.next_attempt_at, Run.created_at) < stale,
                )
                .limit(5000)
            )
        ).all()
        open_runs = exists().where(Run.event_id == Event.id, Run.status.not_in(RUN_TERMINAL))
        unsettled = (
            await conn.scalars(
                select(Event.id)
                .where(Event.status == EventStatus.ROUTED, Event.routed_at < fresh, ~open_runs)
                .limit(5000)
            )
        ).all()
    for event_id in unsettled:
        await state.deliverer.settle_event(event_id)
    if events and state.consumer is not None:
        state.consumer.wake()  # the consumer claims them (it looks on its own too; this is a nudge)
    else:
        for event_id in events:
            await queue.enqueue_event(state.enqueue, event_id)
    for run_id, job_id in due:
        await queue.enqueue_run(state.enqueue, run_id, job_id=job_id or JobId.run(run_id, "due"))
    for run_id, _job in stuck:
        await queue.enqueue_run(state.enqueue, run_id, job_id=JobId.run(run_id, "stuck", int(now.timestamp()) // 60))
    if events or due or stuck or unsettled:
        log.info(
            "sweep_enqueued", events=len(events), due_retries=len(due), stuck_runs=len(stuck), settled=len(unsettled)
        )
    return len(events) + len(due) + len(stuck) + len(unsettled)
