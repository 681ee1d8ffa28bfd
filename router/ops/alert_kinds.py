"""What each kind of alert watches: one function per kind (``KINDS``) that observes its subjects.

A round (router.ops.alerts.evaluate) calls the alert's kind with a ``Context`` and moves each subject's
state from the ``Observation`` it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from router import metrics
from router.pipeline import destinations
from router.records.eventlog import id_floor
from router.records.models import AlertState, Attempt, Event, Run
from router.records.stats import _destination
from router.records.status import RUN_FAILED, AttemptOutcome
from router.rules.alerts import CompiledAlert
from router.rules.compiled import RuleSet

log = structlog.get_logger("router.alerts")

SCAN = 20_000  # attempts read per destination_failing round, newest first


@dataclass
class Observation:
    """What a round saw of one subject: ``bad`` True (the condition holds), False (healthy) or None (no news)."""

    subject: str
    bad: bool | None
    summary: str
    detail: str = ""
    value: float | None = None
    since: datetime | None = None  # when the condition began, when known
    at_once: bool = False  # fire now, whatever `for` says (an open breaker)


@dataclass
class Context:
    engine: AsyncEngine
    redis: Any
    ruleset: RuleSet
    rule_errors: Sequence[str]
    now: datetime
    lookback: float
    rows: dict[str, AlertState]


def _span(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m" + (f" {seconds % 60}s" if seconds % 60 and seconds < 600 else "")
    return f"{seconds // 3600}h" + (f" {seconds % 3600 // 60}m" if seconds % 3600 // 60 else "")


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- what each kind watches ------------------------------------------------------------------------------


async def _destination_failing(ctx: Context, alert: CompiledAlert) -> list[Observation]:
    """Per destination: failing since its first failure after its last success (attempts of the last
    ``lookback`` seconds); an open breaker (as workers published it) fires at once."""
    out: dict[str, Observation] = {}
    since = ctx.now - timedelta(seconds=ctx.lookback)
    async with ctx.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    Attempt.started_at,
                    Attempt.outcome,
                    Attempt.error,
                    Attempt.request["url"].as_string(),
                    Attempt.request["smtp"].as_string(),
                )
                .where(Attempt.started_at >= since, Attempt.started_at <= ctx.now)
                .order_by(Attempt.id.desc())
                .limit(SCAN)
            )
        ).all()
    history: dict[str, list[Any]] = {}
    for started, outcome, error, url, smtp in reversed(rows):  # oldest first
        key = _destination(url, smtp)
        if key is not None:
            history.setdefault(key, []).append((started, outcome, error))
    for key, attempts in history.items():
        failed_since: datetime | None = None
        failures = 0
        last_error = ""
        for started, outcome, error in attempts:
            if outcome == AttemptOutcome.SUCCEEDED:
                failed_since, failures = None, 0
            else:
                failed_since = failed_since or started
                failures += 1
                last_error = error or ""
        if failed_since is None:
            out[key] = Observation(key, False, f"destination {key} is delivering again")
        else:
            out[key] = Observation(
                key,
                True,
                f"destination {key} has failed since {_when(failed_since)} "
                f"({failures} failed attempt(s), no success since)",
                detail=f"last error: {last_error}",
                value=failures,
                since=failed_since,
            )
    try:
        published = await destinations.overview(ctx.engine, ctx.redis)
    except Exception as exc:
        log.warning("alert_breakers_unavailable", error=f"{type(exc).__name__}: {exc}")
        published = []
    for key, is_open in metrics.breakers_from_overview(published).items():
        if is_open:
            out[key] = Observation(
                key, True, f"destination {key} is failing: its circuit breaker is open", at_once=True
            )
    wanted = alert.destinations
    return [o for o in out.values() if wanted is None or o.subject in wanted]


async def _dead_letters(ctx: Context, alert: CompiledAlert) -> list[Observation]:
    since = ctx.now - timedelta(seconds=alert.within_seconds)
    async with ctx.engine.connect() as conn:
        died = await conn.scalar(
            select(func.count()).where(Run.status.in_(RUN_FAILED), Run.finished_at >= since, Run.finished_at <= ctx.now)
        )
        total = await conn.scalar(select(func.count()).where(Run.status.in_(RUN_FAILED)))
    died, window = int(died or 0), _span(alert.within_seconds)
    if died >= alert.at_least:
        summary = f"{died} run(s) failed for good in the last {window} ({total} dead letter(s) in all)"
        return [Observation("", True, summary, "see GET /api/dead-letters or the Dead letters page", died)]
    return [Observation("", False, f"no more than {died} run(s) failed for good in the last {window}", value=died)]


async def _backlog(ctx: Context, alert: CompiledAlert) -> list[Observation]:
    figures = await metrics.queue_figures(ctx.engine, ctx.now)
    waited = figures.oldest_seconds
    if waited >= alert.older_than_seconds:
        summary = (
            f"work has waited {_span(waited)} (over {_span(alert.older_than_seconds)}); {figures.depth} item(s) waiting"
        )
        return [Observation("", True, summary, "are the workers running? see GET /health/ready", waited)]
    return [Observation("", False, f"the backlog is back under {_span(alert.older_than_seconds)}", value=waited)]


async def _source_silent(ctx: Context, alert: CompiledAlert) -> list[Observation]:
    sources = ctx.ruleset.sources
    watched = alert.sources if alert.sources is not None else tuple(k for k, s in sources.items() if s.expect_every)
    out = []
    async with ctx.engine.connect() as conn:
        for source_id in watched:
            source = sources.get(source_id)
            if source is None or not source.expect_every:
                continue
            window = source.expect_every
            start, end = id_floor(ctx.now - timedelta(seconds=window)), id_floor(ctx.now + timedelta(milliseconds=1))
            count = int(
                await conn.scalar(
                    select(func.count()).where(Event.source == source_id, Event.id >= start, Event.id < end)
                )
                or 0
            )
            row = ctx.rows.get(source_id)
            watching = (ctx.now - row.created_at).total_seconds() if row is not None else 0.0
            expected = f"expects at least {source.expect_at_least} every {_span(window)}"
            if count >= source.expect_at_least:
                out.append(Observation(source_id, False, f"source {source_id} is receiving events again", value=count))
            elif watching >= window:  # a source watched for less than one window has not had its chance yet
                summary = f"source {source_id} got {count} event(s) in the last {_span(window)} ({expected})"
                out.append(Observation(source_id, True, summary, f"POST /hooks/{source_id}", count))
            else:
                out.append(Observation(source_id, None, ""))
    return out


async def _rule_errors(ctx: Context, alert: CompiledAlert) -> list[Observation]:
    if ctx.rule_errors:
        summary = f"the rules have {len(ctx.rule_errors)} error(s); the last rules that loaded stay in force"
        return [Observation("", True, summary, "\n".join(ctx.rule_errors), len(ctx.rule_errors))]
    return [Observation("", False, "the rules load without errors again", value=0)]


KINDS: dict[str, Callable[[Context, CompiledAlert], Any]] = {
    "destination_failing": _destination_failing,
    "dead_letters": _dead_letters,
    "backlog": _backlog,
    "source_silent": _source_silent,
    "rule_errors": _rule_errors,
}
