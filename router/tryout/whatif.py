"""What-if (shadow) replay: a new or edited rule against the last N stored events, with no side effects.

Every event is dry-run (``router.tryout.dryrun``): the filter is evaluated and each step rendered, nothing is
sent and nothing is written. Beside each sampled event stands what the rule with the same id did
for it when it really ran (its run's status and each step's recorded ``rendered``/status), so a
change can be judged on real traffic before it is enabled. Where that run recorded a step's
output, a later step of the draft that reads ``steps.<id>`` renders with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import anyio.to_thread
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from router.errors import RuleSetError, WhatIfError
from router.pipeline.match import event_from_row
from router.pipeline.record import SKIPPED_OUTPUT
from router.records.models import Event, Run
from router.records.serialize import fields
from router.records.status import StepStatus
from router.rules.compiled import CompiledRule
from router.tryout.dryrun import dry_run

DEFAULT_LAST = 100
MAX_LAST = 1000
SAMPLE_SIZE = 20
TIME_BUDGET_SECONDS = 30.0


async def load_events(sessions: async_sessionmaker[AsyncSession], source: str, last: int) -> list[dict[str, Any]]:
    """The ``last`` most recent stored events of the source, newest first, as rules see them."""
    query = (
        select(
            Event.id, Event.source, Event.received_at, Event.method, Event.path, Event.headers, Event.query, Event.body
        )
        .where(Event.source == source)
        .order_by(Event.id.desc())
        .limit(last)
    )
    async with sessions() as session:
        rows = (await session.execute(query)).all()
    return [event_from_row(r) for r in rows]


def run_summary(run: Run) -> dict[str, Any]:
    """What a stored run did: its status and each step's status and recorded (redacted) ``rendered``."""
    return {
        "run_id": run.id,
        **fields(run, "status error rule_location ruleset_version created_at"),
        "steps": [{"id": s.step_id, **fields(s, "action status rendered error")} for s in run.steps],
    }


def recorded_outputs(run: Run) -> dict[str, Any]:
    """The step outputs a later step of the run read (``steps.<id>``), as delivery builds them."""
    outputs: dict[str, Any] = {}
    for s in run.steps:
        if s.status == StepStatus.SUCCEEDED:
            outputs[s.step_id] = s.output
        elif s.status == StepStatus.SKIPPED:
            outputs[s.step_id] = s.output if s.output is not None else SKIPPED_OUTPUT
    return outputs


async def latest_runs(
    sessions: async_sessionmaker[AsyncSession], rule_id: str, event_ids: Sequence[str]
) -> dict[str, Run]:
    """Per event, the latest run of the rule with this id (a replay makes a newer one)."""
    found: dict[str, Run] = {}
    if not event_ids:
        return found
    async with sessions() as session:
        for start in range(0, len(event_ids), 500):
            chunk = list(event_ids[start : start + 500])
            query = (
                select(Run)
                .where(Run.rule_id == rule_id, Run.event_id.in_(chunk))
                .order_by(Run.id)
                .options(selectinload(Run.steps))
            )
            for run in (await session.scalars(query)).all():
                found[run.event_id] = run  # ordered by id: the last one wins
    return found


def evaluate(
    rule: CompiledRule,
    events: Sequence[Mapping[str, Any]],
    runs: Mapping[str, Run],
    secrets: Mapping[str, str],
    sample_size: int = SAMPLE_SIZE,
    budget: float = TIME_BUDGET_SECONDS,
) -> dict[str, Any]:
    """Dry-run the rule on each event (newest first) and compare with the current runs."""
    deadline = time.monotonic() + budget
    evaluated = matched = errors = current_matched = newly = no_longer = 0
    sample: list[dict[str, Any]] = []
    complete = True
    for event in events:
        if time.monotonic() > deadline:
            complete = False
            break
        run = runs.get(event["id"])
        outputs = recorded_outputs(run) if run is not None else {}
        result = dry_run(rule, event, secrets, outputs)
        evaluated += 1
        hit = bool(result["matched"])
        matched += hit
        errors += "filter_error" in result
        current_matched += run is not None
        newly += hit and run is None
        no_longer += run is not None and not hit
        if (hit or run is not None) and len(sample) < sample_size:
            item: dict[str, Any] = {
                "event_id": event["id"],
                "received_at": event["received_at"],
                "matched": hit,
                "steps": result["steps"],
                "current": run_summary(run) if run is not None else None,
            }
            if "filter_error" in result:
                item["filter_error"] = result["filter_error"]
            sample.append(item)
    return {
        "rule_id": rule.id,
        "evaluated": evaluated,
        "matched": matched,
        "filter_errors": errors,
        "current_matched": current_matched,
        "newly_matched": newly,
        "no_longer_matched": no_longer,
        "complete": complete,
        "sample": sample,
    }


async def what_if(
    sessions: async_sessionmaker[AsyncSession],
    rule: CompiledRule,
    secrets: Mapping[str, str],
    last: int = DEFAULT_LAST,
    source: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``rule`` against the ``last`` stored events of ``source`` (default: the rule's source)."""
    if not 1 <= last <= MAX_LAST:
        raise ValueError(f"last must be between 1 and {MAX_LAST}")
    source = source or rule.source
    events = await load_events(sessions, source, last)
    runs = await latest_runs(sessions, rule.id, [e["id"] for e in events])
    # Templates and filters are CPU work: keep the event loop free for other requests.
    result = await anyio.to_thread.run_sync(partial(evaluate, rule, events, runs, secrets))
    return {"source": source, "last": last} | result


def summary_text(result: Mapping[str, Any]) -> str:
    """A readable report of a what-if result, for the command line."""
    lines = [
        f"rule {result['rule_id']!r} on the last {result['evaluated']} event(s) of source {result['source']!r}"
        + ("" if result["complete"] else " (stopped early: the time budget ran out)"),
        f"  would match:        {result['matched']}",
        f"  current rule ran:   {result['current_matched']}",
        f"  newly matched:      {result['newly_matched']}",
        f"  no longer matched:  {result['no_longer_matched']}",
    ]
    if result["filter_errors"]:
        lines.append(f"  filter errors:      {result['filter_errors']}")
    for item in result["sample"]:
        current = item["current"]
        now = "matches" if item["matched"] else "does not match"
        was = f"current run {current['status']}" if current else "current rule did not run"
        lines.append(f"\nevent {item['event_id']} ({item['received_at']}): {now}; {was}")
        if item.get("filter_error"):
            lines.append(f"  filter error: {item['filter_error']}")
        before = {s["id"]: s for s in current["steps"]} if current else {}
        if item["matched"]:
            for step in item["steps"]:
                state = "skipped" if step["skipped"] else ("error" if step["error"] else "would send")
                lines.append(f"  step {step['id']} ({step['action']}): {state}")
                if step["error"]:
                    lines.append(f"    error: {step['error']}")
                elif step["with"] is not None:
                    lines.append(f"    with: {_compact(step['with'])}")
                if step["id"] in before:
                    old = before[step["id"]]
                    lines.append(f"    current: {old['status']}, rendered {_compact(old['rendered'])}")
        elif current:
            for old in current["steps"]:
                lines.append(f"  current step {old['id']} ({old['action']}): {old['status']}")
    return "\n".join(lines)


def _compact(value: Any, limit: int = 300) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def what_if_file(
    database_url: str,
    rules_dir: Path,
    rule_file: Path,
    last: int = DEFAULT_LAST,
    source: str | None = None,
    rule_id: str | None = None,
    warn: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """``router what-if``: load RULE_FILE (with the sources of the rules folder), evaluate one of its rules.

    Warnings go to ``warn`` as they are found; raises RuleSetError (file:line:col) or WhatIfError.
    """
    from router.records import db
    from router.rules.ruleset import load_rule_file, load_ruleset

    try:
        known = load_ruleset(rules_dir, allow_missing_secrets=True).sources
    except RuleSetError as exc:
        known = {}
        warn(
            f"the rules folder {str(rules_dir)!r} does not load ({len(exc.errors)} problem(s)); "
            "only the sources defined in the rule file are known"
        )
    drafts = load_rule_file(rule_file, known)
    for warning in drafts.warnings:
        warn(warning)
    if rule_id is not None:
        rule = drafts.rules.get(rule_id)
        if rule is None:
            raise WhatIfError(f"{drafts.files[0]} has no rule {rule_id!r}; its rules: {', '.join(drafts.rules)}")
    elif len(drafts.rules) == 1:
        (rule,) = drafts.rules.values()
    else:
        raise WhatIfError(
            f"{drafts.files[0]} has {len(drafts.rules)} rules ({', '.join(drafts.rules)}); pick one with --rule ID"
        )
    engine = db.create_engine(database_url)
    try:
        result = await what_if(db.sessionmaker(engine), rule, drafts.secrets, last, source)
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        hint = (
            "; `router db upgrade` creates the tables"
            if "no such table" in reason or "does not exist" in reason
            else ""
        )
        raise WhatIfError(f"cannot read the stored events (ROUTER_DATABASE_URL): {reason}{hint}") from None
    finally:
        await engine.dispose()
    return result | {"rule_location": rule.location}
