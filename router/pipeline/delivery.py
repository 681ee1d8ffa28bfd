"""Executing a run: its steps in order, each step's outcome and attempt committed as it ends.

The record is the ledger: a step that succeeded is never executed again for the same run; a run
that is resumed (after a crash) starts at its first step not yet done, with the stored outputs of
the steps before it. A run's final state, and the event's when it is the event's only run, are
written in the same transaction as its last step.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from router import logs, metrics
from router.actions import ACTIONS, ActionContext
from router.errors import ActionError, PermanentError
from router.faults import crash_point
from router.pipeline import queue
from router.pipeline.destinations import Destinations, destination_of
from router.pipeline.ingest import Incoming, new_event_row
from router.pipeline.ledger import LedgerWriter, Op, execute_ops
from router.pipeline.limits import Lease
from router.pipeline.match import Rendered, build_context, render_step
from router.pipeline.outbound import OutboundClient
from router.pipeline.queue import Enqueue, JobId
from router.pipeline.record import SKIPPED_OUTPUT, Outcome, RunPlan, StepRow, _json, close_run, save_step, settle_event
from router.pipeline.retry import RetryPolicy, compile_policy
from router.pipeline.store import insert_events
from router.records.models import utcnow
from router.records.status import (
    RunStatus,
    StepStatus,
)
from router.rules.compiled import CompiledRule, CompiledStep, RuleSet
from router.settings import Settings

log = structlog.get_logger("router.delivery")


@dataclass
class Deliverer:
    """What executing steps needs: the database, the HTTP client, settings and a way to enqueue.

    With a ``ledger`` (router/pipeline/ledger.py) each step's record is group-committed with other runs'; without
    one, each is its own transaction. Either way a step's record is committed before the next step starts.
    """

    settings: Settings
    engine: AsyncEngine
    http: OutboundClient
    enqueue: Enqueue  # the worker state's: queue a job (router/pipeline/queue.py)
    ledger: LedgerWriter | None = None
    redis: Any = None  # ArqRedis, set once the pool exists
    destinations: Destinations = field(init=False)

    def __post_init__(self) -> None:
        self.destinations = Destinations(self.engine)

    async def commit(self, ops: list[Op]) -> None:
        """Commit a unit of statements, through the ledger writer when there is one."""
        if self.ledger is not None:
            await self.ledger.write(ops)
            return
        async with self.engine.begin() as conn:
            await execute_ops(conn, ops)

    async def run(self, plan: RunPlan, rule: CompiledRule | None, ruleset: RuleSet) -> str:
        """Execute the run's pending steps; return its final status."""
        logs.bind(event_id=plan.event["id"], rule=plan.rule_id, run_id=plan.id)  # on every line about this run
        if rule is None:
            return await self._finish(plan, RunStatus.FAILED, f"rule {plan.rule_id!r} is no longer loaded")
        compiled = {s.id: s for s in rule.steps}
        outputs: dict[str, Any] = {}
        todo = [row for row in plan.steps if row.status not in (StepStatus.SUCCEEDED, StepStatus.SKIPPED)]
        for row in plan.steps:
            if row.status == StepStatus.SUCCEEDED:
                outputs[row.step_id] = row.output
            elif row.status == StepStatus.SKIPPED:  # `when` was false, or the ledger says it was sent before
                outputs[row.step_id] = row.output if row.output is not None else SKIPPED_OUTPUT
        if not todo:
            return await self._finish(plan, RunStatus.SUCCEEDED, None)
        started = time.monotonic()
        budget = self.settings.job_timeout / 2
        for row in todo:
            if row is not todo[0] and time.monotonic() - started > budget:
                return await self._hand_off(plan, row)
            step = compiled.get(row.step_id)
            if step is None:
                return await self._finish(
                    plan, RunStatus.FAILED, f"step {row.step_id!r} is no longer in rule {rule.id!r}"
                )
            last = row is todo[-1]
            logs.bind(step=row.step_id)
            ctx = build_context(plan.event, ruleset.secrets, outputs)
            outcome = await self._step(plan, row, step, ctx, ruleset, last, rule)
            if outcome.status not in (StepStatus.SUCCEEDED, StepStatus.SKIPPED):
                return outcome.status
            outputs[row.step_id] = row.output if row.status == StepStatus.SUCCEEDED else SKIPPED_OUTPUT
            crash_point("mid_chain", when=not last)  # test-only (router/faults.py): step recorded, next not begun
        return RunStatus.SUCCEEDED

    async def _step(
        self,
        plan: RunPlan,
        row: StepRow,
        step: CompiledStep,
        ctx: dict[str, Any],
        ruleset: RuleSet,
        last: bool,
        rule: CompiledRule,
    ) -> Outcome:
        started, t0 = utcnow(), time.perf_counter()
        rendered = render_step(step, ctx)
        if rendered.skipped:
            outcome = Outcome(StepStatus.SKIPPED, started, t0)
        elif rendered.error is not None:
            outcome = Outcome(
                StepStatus.FAILED, started, t0, rendered=rendered.with_, error=str(rendered.error), tried=True
            )
        else:
            outcome = await self._execute(plan, row, step, rendered, ruleset, started, t0)
        crash_point("after_send")  # test-only (router/faults.py): the action returned, its outcome not yet recorded
        outcome.redact(ruleset.secrets)
        run_status: str | None = RunStatus.SUCCEEDED if last else None
        run_error = job_id = None
        if outcome.hold is not None:  # not sent (or a 410): wait, without using up an attempt
            hold = outcome.hold
            outcome.note, run_error = hold.reason, f"step {row.step_id!r}: {hold.reason}"
            if hold.paused:
                run_status = outcome.status = RunStatus.HELD
            else:
                run_status = outcome.status = RunStatus.RETRYING
                outcome.next_attempt_at = utcnow() + timedelta(seconds=hold.seconds)
                job_id = JobId.run(plan.id, "held", int(time.time() + hold.seconds))
            outcome.error = None if not outcome.tried else outcome.error
        elif outcome.error is not None:
            run_status = outcome.status = self._after_failure(row, outcome, rule, step)
            run_error = f"step {row.step_id!r}: {outcome.error}"
            if run_status == RunStatus.RETRYING:
                job_id = JobId.attempt(plan.id, row.attempts_count + 2)
        ops = save_step(row, outcome)
        if run_status is not None:
            ops += close_run(plan, run_status, run_error, outcome.next_attempt_at, job_id)
        await self.commit(ops)
        metrics.step_outcome(plan.rule_id, row.step_id, step.action, outcome.status, plan.event["received_at"])
        if outcome.error is not None:
            log.warning(
                "step_failed", step=row.step_id, event_id=plan.event["id"], error=outcome.error, outcome=outcome.status
            )
        if job_id is not None and outcome.next_attempt_at is not None:
            delay = max(0.0, (outcome.next_attempt_at - utcnow()).total_seconds())
            try:
                await queue.enqueue_run(self.enqueue, plan.id, job_id=job_id, defer=delay)
            except Exception as exc:  # Redis down: the reconciler enqueues it under the same job id
                log.warning("retry_enqueue_failed", run_id=plan.id, error=str(exc))
        elif run_status is not None and (run_status != RunStatus.SUCCEEDED or logs.debugging()):
            # a success is counted (router_step_attempts_total), and written as a line only at DEBUG
            log.log(
                logging.INFO if run_status != RunStatus.SUCCEEDED else logging.DEBUG,
                "run_finished",
                run_id=plan.id,
                rule=plan.rule_id,
                status=run_status,
            )
        return outcome

    async def _execute(
        self,
        plan: RunPlan,
        row: StepRow,
        step: CompiledStep,
        rendered: Rendered,
        ruleset: RuleSet,
        started: datetime,
        t0: float,
    ) -> Outcome:
        """Run the action, unless its destination is paused or failing; count the outcome for its breaker."""
        dest = destination_of(
            step.action,
            rendered.config,
            f"{self.settings.smtp_host}:{self.settings.smtp_port}",
            self.settings.slack_api_url,
        )
        if dest is not None and (hold := await self.destinations.check(dest)) is not None:
            return Outcome(StepStatus.HELD, started, t0, rendered=rendered.with_, hold=hold)
        lease: Lease | None = None
        if dest is not None and step.limits is not None:
            hold, lease = await self.destinations.within_limits(dest, step.limits)
            if hold is not None:
                return Outcome(StepStatus.HELD, started, t0, rendered=rendered.with_, hold=hold)
        try:
            actx = ActionContext(
                http=self.http,
                settings=self.settings,
                idempotency_key=row.idempotency_key,
                event_id=plan.event["id"],
                chain_depth=plan.chain_depth,
                step_ref=row.id,
                emit=lambda *a: self.emit(ruleset, plan.chain_depth, row.id, *a),
            )
            outcome = Outcome(StepStatus.SUCCEEDED, started, t0, rendered=rendered.with_, tried=True)
            try:
                result = await ACTIONS[step.action].execute(self._within_job(rendered.config), actx)
            except ActionError as exc:
                outcome.status, outcome.error = StepStatus.FAILED, exc.message
                outcome.output, outcome.request = exc.response, exc.request
                outcome.retryable, outcome.retry_after = exc.retryable, exc.retry_after
            except Exception as exc:  # a bug must not leave the run stuck in `running`
                log.exception("step_crashed", step=row.step_id, event_id=plan.event["id"])
                outcome.status, outcome.error = StepStatus.FAILED, f"internal error: {type(exc).__name__}: {exc}"
                return outcome
            else:
                outcome.output, outcome.request = result.output(), result.request
            if dest is not None:
                status = outcome.output.get("status") if isinstance(outcome.output, dict) else None
                outcome.hold = await self.destinations.record(dest, failed=outcome.retryable, status=status)
            return outcome
        finally:
            await self.destinations.limiter.release(lease)

    def _within_job(self, config: Any) -> Any:
        """Cap a step's own timeout at 80 % of the job's, so arq never kills a job mid-call."""
        cap = self.settings.job_timeout * 0.8
        if getattr(config, "timeout", 0) > cap:
            return config.model_copy(update={"timeout": cap})
        return config

    async def _hand_off(self, plan: RunPlan, row: StepRow) -> str:
        """Past half the job's time: leave the rest of the run to a new job, so no job outlives its timeout
        (a killed worker's work must come back within seconds, which needs short job timeouts)."""
        job_id = JobId.run(plan.id, "from", row.id)
        await self.commit(close_run(plan, RunStatus.PENDING, None, utcnow(), job_id))
        await queue.enqueue_run(self.enqueue, plan.id, job_id=job_id)
        log.info("run_handed_off", run_id=plan.id, next_step=row.step_id)
        return RunStatus.PENDING

    def policy(self, rule: CompiledRule, step: CompiledStep) -> RetryPolicy:
        """The step's retry policy: its own `retry`, else its rule's, else the global schedule."""
        default = self.settings.retry_policy()
        return compile_policy(step.retry, default, compile_policy(rule.retry, default))

    def _after_failure(self, row: StepRow, outcome: Outcome, rule: CompiledRule, step: CompiledStep) -> str:
        """`retrying` (with the time of the next attempt), `dead` (attempts exhausted) or `failed` (permanent)."""
        if not outcome.retryable:
            return RunStatus.FAILED
        policy = self.policy(rule, step)
        made = row.attempts_count + 1  # this attempt included
        if made >= policy.max_attempts:
            outcome.error = f"{outcome.error} (gave up after {made} attempt{'s' if made > 1 else ''})"
            return RunStatus.DEAD
        delay = policy.delay_before(made + 1, outcome.retry_after)
        outcome.next_attempt_at = utcnow() + timedelta(seconds=delay)
        return RunStatus.RETRYING

    async def _finish(self, plan: RunPlan, status: str, error: str | None) -> str:
        await self.commit(close_run(plan, status, error))
        log.info("run_finished", run_id=plan.id, rule=plan.rule_id, status=status, error=error)
        return status

    async def settle_event(self, event_id: str) -> None:
        """Set an event's state from its runs'; run after their commits, so the last caller sees them all."""
        await self.commit(settle_event(event_id))

    async def emit(
        self,
        ruleset: RuleSet,
        parent_depth: int,
        parent_step_id: str,
        source_id: str,
        body: Any,
        headers: dict[str, str],
        dedupe: str,
    ) -> str:
        """Store a new event in another source (once per dedupe key) and enqueue it."""
        if source_id not in ruleset.sources:
            raise PermanentError(f"unknown source {source_id!r} to emit into")
        req = Incoming(
            source=source_id,
            method="EMIT",
            path=f"/hooks/{source_id}",
            headers=headers,
            query={},
            raw=_json(body).encode(),
        )
        row = new_event_row(None, req, body, chain_depth=parent_depth + 1, dedupe=dedupe, parent_step_id=parent_step_id)
        async with self.engine.begin() as conn:
            ((event_id, _dup),) = await insert_events(conn, [row])
        await self.wake([event_id])
        return event_id

    async def wake(self, event_ids: list[str]) -> None:
        """Stored events are waiting to be routed: ring the workers' doorbell (they also look on their own)."""
        if self.redis is not None:
            try:
                await queue.events_stored(self.redis, event_ids)
            except Exception as exc:  # Redis down: the workers find the events when they next look
                log.warning("wake_failed", error=str(exc), events=len(event_ids))
