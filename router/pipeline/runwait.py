"""Runs that wait for their next try: seen, hurried (**Retry now**) and superseded (by a **Replay**).

A retrying run's next attempt is an arq job deferred under the job id recorded in ``runs.job_id``.
The database decides which job may execute the run:

- ``superseded(conn, run_id, job_id)`` (called first thing by ``router.pipeline.jobs.execute_run``): a job whose id
  is not the one recorded, for a run that is waiting and not yet due, or that another job is running
  now, does nothing. So an older deferred job left in Redis after **Retry now** cannot send twice.
- ``retry_now``: record a new job id and "due now" for a retrying or held run, then queue that job. The
  run keeps its id and its steps their attempt count: the next attempt is numbered after the last.
- ``supersede_waiting``: mark a waiting run of a rule ``superseded`` (a final state) in the replay's own
  transaction; its pending retry finds it final and does nothing.

``worst_states`` gives each event's worst run state, for the event list.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from router.access import audit
from router.errors import RunWaitError
from router.pipeline import queue
from router.pipeline.queue import Enqueue, JobId
from router.records.models import Run, RunStep, utcnow
from router.records.status import RUN_WAITING, RunStatus, StepStatus

WAITING = RUN_WAITING
# Worst first: what the event list shows for an event with several runs.
WORST = (RunStatus.DEAD, RunStatus.FAILED, RunStatus.HELD, RunStatus.RETRYING)


async def superseded(conn: AsyncConnection, run_id: str, job_id: str | None, stale_after: float) -> bool:
    """Whether the job ``job_id`` must leave run ``run_id`` alone (another job carries it now)."""
    if job_id is None:
        return False
    row = (await conn.execute(select(Run.status, Run.job_id, Run.next_attempt_at).where(Run.id == run_id))).first()
    if row is None or row.job_id is None or row.job_id == job_id:
        return False
    now = utcnow()
    if row.status in WAITING:  # not yet due: the recorded job will come
        return row.next_attempt_at is None or row.next_attempt_at > now
    if row.status == RunStatus.RUNNING:  # started recently by the recorded job (a stale one is the sweep's to resume)
        return row.next_attempt_at is not None and row.next_attempt_at > now - timedelta(seconds=stale_after)
    return False


async def retry_now(engine: AsyncEngine, enqueue: Enqueue, run_id: str, *, actor: str | None = None) -> dict[str, Any]:
    """Execute a retrying or held run now, as the same run (its attempts keep counting)."""
    async with engine.begin() as conn:
        row = (await conn.execute(select(Run.status, Run.event_id).where(Run.id == run_id))).first()
        if row is None:
            raise RunWaitError(404, f"no run {run_id!r}")
        if row.status not in WAITING:
            raise RunWaitError(
                409, f"run {run_id} is {row.status}; Retry now is for a run waiting for its next try (retrying, held)"
            )
        made = await conn.scalar(select(func.max(RunStep.attempts_count)).where(RunStep.run_id == run_id)) or 0
        job_id = JobId.run(run_id, "now", made + 1, int(utcnow().timestamp()))
        moved = await conn.execute(
            update(Run).where(Run.id == run_id, Run.status.in_(WAITING)).values(next_attempt_at=utcnow(), job_id=job_id)
        )
        if moved.rowcount != 1:
            raise RunWaitError(409, f"run {run_id} started meanwhile; reload to see it")
        if actor is not None:
            await audit.record_on(conn, actor, "run_retry_now", run_id, {"attempt": made + 1, "was": row.status})
    await queue.enqueue_run(enqueue, run_id, job_id=job_id)
    return {"run_id": run_id, "event_id": row.event_id, "attempt": made + 1, "was": row.status}


async def supersede_waiting(
    conn: AsyncConnection, event_id: str, rule_ids: Sequence[str], by: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """End the waiting runs of these rules for the event (``superseded`` by ``by``, e.g. a replay).

    Returns (runs superseded, runs of these rules still running or pending: left alone, said so).
    """
    if not rule_ids:
        return [], []
    rows = (
        await conn.execute(
            select(Run.id, Run.rule_id, Run.status).where(
                Run.event_id == event_id,
                Run.rule_id.in_(rule_ids),
                Run.status.in_((*WAITING, RunStatus.PENDING, RunStatus.RUNNING)),
            )
        )
    ).all()
    done, busy = [], []
    for run in rows:
        if run.status in WAITING:
            ended = await conn.execute(
                update(Run)
                .where(Run.id == run.id, Run.status.in_(WAITING))
                .values(
                    status=RunStatus.SUPERSEDED, error=f"superseded by {by}", finished_at=utcnow(), next_attempt_at=None
                )
            )
            if ended.rowcount == 1:
                await conn.execute(
                    update(RunStep)
                    .where(RunStep.run_id == run.id, RunStep.status.in_(WAITING))
                    .values(status=StepStatus.SUPERSEDED, next_attempt_at=None, note=f"superseded by {by}")
                )
                done.append({"id": run.id, "rule_id": run.rule_id, "was": run.status})
                continue
        busy.append({"id": run.id, "rule_id": run.rule_id, "status": run.status})
    return done, busy


async def worst_states(session: AsyncSession, event_ids: Sequence[str]) -> dict[str, str]:
    """Each event's worst run state among dead, failed, held and retrying (events with none are left out)."""
    if not event_ids:
        return {}
    rows = await session.execute(
        select(Run.event_id, Run.status).where(Run.event_id.in_(event_ids), Run.status.in_(WORST)).distinct()
    )
    out: dict[str, str] = {}
    for event_id, status in rows:
        if event_id not in out or WORST.index(status) < WORST.index(out[event_id]):
            out[event_id] = status
    return out


def next_try(value: datetime | None) -> str:
    """How long until a retrying run's next try, in words ("in 4 min")."""
    if value is None:
        return ""
    seconds = (value - utcnow()).total_seconds()
    if seconds <= 1:
        return "due now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"in {seconds / size:.0f} {unit}"
    return f"in {seconds:.0f} s"
