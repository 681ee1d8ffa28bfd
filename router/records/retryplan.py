"""What retrying a failed or dead run would really do, decided per run before anything is sent.

A run can be resumed at its failed step only while its rule is loaded and still has that step; it can
start over only while its rule is loaded. ``plan`` says, for each run, either what would be sent or why
it cannot be retried; the bulk preview shows it, and ``router.records.replay.retry_run`` refuses the same runs
with the same words (so "Retried N run(s)" counts only runs really sent on their way).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from router.records.models import RunStep
from router.records.status import StepStatus
from router.rules.compiled import CompiledRule, RuleSet

DONE = (StepStatus.SUCCEEDED, StepStatus.SKIPPED)


def why_not(rule_id: str, rule: CompiledRule | None, todo: Sequence[str], *, start: bool, test: bool = False) -> str:
    """Why a run of ``rule_id`` cannot be retried (empty when it can); ``todo``: its step ids not done yet."""
    if rule is None:
        hint = "a Send test of a rule never saved" if test else "it was renamed, removed or disabled"
        return f"rule {rule_id!r} is no longer loaded ({hint}); replay the event to run the rules in force"
    if not start:
        known = {step.id for step in rule.steps}
        gone = [step for step in todo if step not in known]
        if gone:
            return (
                f"step {gone[0]!r} is no longer in rule {rule_id!r}; retry from the start to run the rule as it is now"
            )
    return ""


async def plan(conn: AsyncConnection, runs: Sequence[Any], ruleset: RuleSet, *, start: bool) -> list[dict[str, Any]]:
    """For each run (rows with id, rule_id, event_id, status, test_send): what a retry would send, or why not."""
    if not runs:
        return []
    rows = (
        await conn.execute(
            select(RunStep.run_id, RunStep.step_id, RunStep.status)
            .where(RunStep.run_id.in_([r.id for r in runs]))
            .order_by(RunStep.run_id, RunStep.position)
        )
    ).all()
    steps: dict[str, list[tuple[str, str]]] = {r.id: [] for r in runs}
    for s in rows:
        steps[s.run_id].append((s.step_id, s.status))
    out = []
    for run in runs:
        rule = ruleset.rules.get(run.rule_id)
        todo = [sid for sid, status in steps[run.id] if status not in DONE]
        reason = why_not(run.rule_id, rule, todo, start=start, test=bool(getattr(run, "test_send", False)))
        if reason:
            would, count = "", 0
        elif start:
            assert rule is not None
            count = len(rule.steps)
            would = f"start over as a new run of {len(rule.steps)} step(s) (steps already sent are skipped)"
        else:
            count = len(todo)
            would = f"resume at step {todo[0]!r}: {count} step(s) to send" if todo else "nothing left to send"
        out.append(
            {
                "run_id": run.id,
                "event_id": run.event_id,
                "rule_id": run.rule_id,
                "status": run.status,
                "test_send": bool(getattr(run, "test_send", False)),
                "would": would,
                "steps": count,
                "cannot": reason,
            }
        )
    return out
