"""The worker's jobs: route an event into runs, execute a run's steps, sweep up work never enqueued.

Every state change is committed before the next begins, so a killed worker leaves a record that
says exactly where it stopped. Jobs are idempotent: running one twice does no work twice.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from router.actions import ACTIONS, ActionContext
from router.capture import insert_events
from router.errors import ActionError
from router.ingest import Incoming, new_event_row
from router.models import Attempt, Event, Run, RunStep, new_id, utcnow
from router.routing import build_context, event_dict, match_rules, redact, render_step
from router.ruleset import CompiledRule, RuleSet
from router.settings import Settings

log = structlog.get_logger("router.jobs")

TERMINAL = ("succeeded", "failed")


@dataclass
class RulesHolder:
    """The rule set in force and the errors of the last load."""

    current: RuleSet = field(default_factory=RuleSet)
    errors: list[str] = field(default_factory=list)
    loaded: bool = False


@dataclass
class WorkerState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    rules: RulesHolder
    redis: Any = None  # ArqRedis, set once the pool exists

    async def enqueue(self, function: str, *args: Any, job_id: str) -> None:
        if self.redis is not None:
            await self.redis.enqueue_job(function, *args, _job_id=job_id)


def _state(ctx: dict[str, Any]) -> WorkerState:
    state: WorkerState = ctx["state"]
    if state.redis is None:
        state.redis = ctx.get("redis")
    return state


async def process_event(ctx: dict[str, Any], event_id: str) -> int:
    """Match an event against the rules in force and create one run per matching rule."""
    state = _state(ctx)
    ruleset = state.rules.current
    async with state.sessions.begin() as session:
        event = await session.get(Event, event_id)
        if event is None or event.status != "received":
            return 0
        ev = event_dict(
            id=event.id,
            source=event.source,
            received_at=event.received_at,
            method=event.method,
            path=event.path,
            headers=event.headers,
            query=event.query,
            body=event.body,
        )
        matched = match_rules(ruleset, event.source, build_context(ev, ruleset.secrets))
        claimed = await session.execute(
            update(Event)
            .where(Event.id == event_id, Event.status == "received")
            .values(
                status="routed" if matched else "unmatched",
                matched=len(matched),
                ruleset_version=ruleset.version,
                routed_at=utcnow(),
            )
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return 0
        run_ids = [_new_run(session, event, rule, ruleset.version) for rule in matched]
    for run_id in run_ids:
        await state.enqueue("execute_run", run_id, job_id=f"run:{run_id}")
    log.info("event_routed", event_id=event_id, matched=len(run_ids))
    return len(run_ids)


def _new_run(session: AsyncSession, event: Event, rule: CompiledRule, version: str) -> str:
    run_id = new_id()
    session.add(
        Run(
            id=run_id,
            event_id=event.id,
            rule_id=rule.id,
            rule_location=rule.location,
            ruleset_version=version,
            status="pending",
            created_at=utcnow(),
        )
    )
    for position, step in enumerate(rule.steps):
        step_row_id = new_id()
        session.add(
            RunStep(
                id=step_row_id,
                run_id=run_id,
                position=position,
                step_id=step.id,
                action=step.action,
                status="pending",
                idempotency_key=f"{event.id}:{rule.id}:{step.id}",
            )
        )
    return run_id


async def execute_run(ctx: dict[str, Any], run_id: str) -> str:
    """Run a run's pending steps in order; every step and attempt is committed as it ends."""
    state = _state(ctx)
    ruleset = state.rules.current
    async with state.sessions.begin() as session:
        run = await session.get(Run, run_id)
        if run is None or run.status in TERMINAL:
            return run.status if run else "missing"
        event = await session.get(Event, run.event_id)
        steps = list(
            (await session.scalars(select(RunStep).where(RunStep.run_id == run_id).order_by(RunStep.position))).all()
        )
        run.status, run.started_at = "running", run.started_at or utcnow()
    assert event is not None
    rule = ruleset.rules.get(run.rule_id)
    if rule is None:
        return await _finish_run(state, run, "failed", f"rule {run.rule_id!r} is no longer loaded")
    ev = event_dict(
        id=event.id,
        source=event.source,
        received_at=event.received_at,
        method=event.method,
        path=event.path,
        headers=event.headers,
        query=event.query,
        body=event.body,
    )
    outputs: dict[str, Any] = {}
    compiled = {s.id: s for s in rule.steps}
    for row in steps:
        if row.status == "succeeded":
            outputs[row.step_id] = row.output
            continue
        if row.status == "skipped":
            outputs[row.step_id] = _skipped_output()
            continue
        step = compiled.get(row.step_id)
        if step is None:
            return await _finish_run(state, run, "failed", f"step {row.step_id!r} is no longer in rule {rule.id!r}")
        error = await _execute_step(state, event, row, step, build_context(ev, ruleset.secrets, outputs), ruleset)
        if error is not None:
            return await _finish_run(state, run, "failed", f"step {row.step_id!r}: {error}")
        outputs[row.step_id] = row.output if row.status == "succeeded" else _skipped_output()
    return await _finish_run(state, run, "succeeded", None)


def _skipped_output() -> dict[str, Any]:
    return {"status": None, "headers": {}, "body": None, "skipped": True}


async def _execute_step(
    state: WorkerState, event: Event, row: RunStep, step: Any, ctx: dict[str, Any], ruleset: RuleSet
) -> str | None:
    """Execute one step and record it; return the (redacted) error message if it failed."""
    started = utcnow()
    t0 = time.perf_counter()
    secrets = ruleset.secrets
    rendered = render_step(step, ctx)
    if rendered.skipped:
        await _save_step(state, row, secrets, status="skipped", started=started)
        return None
    if rendered.error is not None:
        message = str(rendered.error)
        await _save_step(
            state,
            row,
            secrets,
            status="failed",
            started=started,
            error=message,
            rendered=rendered.with_,
            attempt=Attempted(t0, error=message),
        )
        return str(redact(message, secrets))
    actx = ActionContext(
        http=state.http,
        settings=state.settings,
        idempotency_key=row.idempotency_key,
        event_id=event.id,
        chain_depth=event.chain_depth,
        step_ref=row.id,
        emit=lambda *a: _emit(state, ruleset, event, row, *a),
    )
    try:
        result = await ACTIONS[step.action].execute(rendered.config, actx)
    except ActionError as exc:
        await _save_step(
            state,
            row,
            secrets,
            status="failed",
            started=started,
            error=exc.message,
            rendered=rendered.with_,
            output=exc.response,
            attempt=Attempted(t0, exc.request, exc.response, exc.message, exc.retryable),
        )
        log.warning("step_failed", step=row.step_id, event_id=event.id, error=redact(exc.message, secrets))
        return str(redact(exc.message, secrets))
    except Exception as exc:  # a bug must not leave the run stuck in `running`
        message = f"internal error: {type(exc).__name__}: {exc}"
        log.exception("step_crashed", step=row.step_id, event_id=event.id)
        await _save_step(
            state,
            row,
            secrets,
            status="failed",
            started=started,
            error=message,
            rendered=rendered.with_,
            attempt=Attempted(t0, error=message),
        )
        return str(redact(message, secrets))
    output = result.output()
    await _save_step(
        state,
        row,
        secrets,
        status="succeeded",
        started=started,
        rendered=rendered.with_,
        output=output,
        attempt=Attempted(t0, result.request, output),
    )
    return None


@dataclass
class Attempted:
    """What one try sent and got back, before it is recorded."""

    t0: float
    request: Any = None
    response: Any = None
    error: str | None = None
    retryable: bool = False


async def _save_step(
    state: WorkerState,
    row: RunStep,
    secrets: Mapping[str, str],
    *,
    status: str,
    started: datetime,
    error: str | None = None,
    rendered: Any = None,
    output: Any = None,
    attempt: Attempted | None = None,
) -> None:
    """Record a step's outcome and its attempt; every value is redacted of secrets first."""
    error, rendered, output = redact(error, secrets), redact(rendered, secrets), redact(output, secrets)
    row.status, row.error, row.rendered, row.output = status, error, rendered, output
    values: dict[str, Any] = {
        "status": status,
        "error": error,
        "rendered": rendered,
        "output": output,
        "started_at": started,
        "finished_at": utcnow(),
    }
    async with state.sessions.begin() as session:
        if attempt is not None:
            row.attempts_count += 1
            values["attempts_count"] = row.attempts_count
            response = redact(attempt.response, secrets) or {}
            body = response.get("snippet", response.get("body"))
            session.add(
                Attempt(
                    run_step_id=row.id,
                    number=row.attempts_count,
                    started_at=started,
                    duration_ms=round((time.perf_counter() - attempt.t0) * 1000, 3),
                    request=redact(attempt.request, secrets),
                    response_status=response.get("status"),
                    response_body=None if body is None else (body if isinstance(body, str) else _json(body))[:4096],
                    outcome="failed" if attempt.error else "succeeded",
                    error=redact(attempt.error, secrets),
                    retryable=attempt.retryable,
                )
            )
        await session.execute(update(RunStep).where(RunStep.id == row.id).values(**values))


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, default=str)


async def _finish_run(state: WorkerState, run: Run, status: str, error: str | None) -> str:
    async with state.sessions.begin() as session:
        await session.execute(
            update(Run).where(Run.id == run.id).values(status=status, error=error, finished_at=utcnow())
        )
    # A separate statement after the commit: whichever run finishes last sees every sibling's state.
    async with state.sessions.begin() as session:
        failed = exists().where(Run.event_id == run.event_id, Run.status == "failed")
        open_ = exists().where(Run.event_id == run.event_id, Run.status.not_in(TERMINAL))
        await session.execute(
            update(Event)
            .where(Event.id == run.event_id, Event.status.in_(("routed", "succeeded")), failed)
            .values(status="failed")
        )
        await session.execute(
            update(Event)
            .where(Event.id == run.event_id, Event.status == "routed", ~open_, ~failed)
            .values(status="succeeded")
        )
    log.info("run_finished", run_id=run.id, rule=run.rule_id, status=status, error=error)
    return status


async def _emit(
    state: WorkerState,
    ruleset: RuleSet,
    parent: Event,
    row: RunStep,
    source_id: str,
    body: Any,
    headers: dict[str, str],
    dedupe: str,
) -> str:
    from router.errors import PermanentError

    if source_id not in ruleset.sources:
        raise PermanentError(f"unknown source {source_id!r} to emit into")
    req = Incoming(
        source=source_id, method="EMIT", path=f"/hooks/{source_id}", headers=headers, query={}, raw=_json(body).encode()
    )
    event_row = new_event_row(None, req, body, chain_depth=parent.chain_depth + 1, dedupe=dedupe, parent_step_id=row.id)
    async with state.engine.begin() as conn:
        ((event_id, _dup),) = await insert_events(conn, [event_row])
    await state.enqueue("process_event", event_id, job_id=f"event:{event_id}")
    return event_id


async def sweep(ctx: dict[str, Any]) -> int:
    """Enqueue events stored but never enqueued, and runs left pending (Redis down, lost enqueue)."""
    state = _state(ctx)
    cutoff = datetime.now(UTC) - timedelta(seconds=max(2.0, state.settings.sweep_interval / 2))
    async with state.sessions() as session:
        events = (
            await session.scalars(
                select(Event.id).where(Event.status == "received", Event.received_at < cutoff).limit(5000)
            )
        ).all()
        runs = (
            await session.scalars(select(Run.id).where(Run.status == "pending", Run.created_at < cutoff).limit(5000))
        ).all()
    for event_id in events:
        await state.enqueue("process_event", event_id, job_id=f"event:{event_id}")
    for run_id in runs:
        await state.enqueue("execute_run", run_id, job_id=f"run:{run_id}")
    if events or runs:
        log.info("sweep_enqueued", events=len(events), runs=len(runs))
    return len(events) + len(runs)
