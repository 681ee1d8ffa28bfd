"""The workers' polling jobs: a tick each second that queues the polls that are due, and the poll itself.

``poll_tick`` runs as an arq cron job (once per second across all workers: arq gives each run one job
id). It keeps a state row per pulled source and queues ``poll_source`` for each source that is due
and whose lease is free, under a job id naming the source, its lease count and its due time, so a
source waiting in the queue is never queued twice, and a source whose worker died is queued afresh
once its lease has run out.
"""

from __future__ import annotations

from typing import Any

import structlog

from router.pipeline import queue
from router.polling import store
from router.polling.runner import PollDeps, poll_once

log = structlog.get_logger("router.polling")


def _deps(state: Any) -> PollDeps:
    return PollDeps(engine=state.engine, settings=state.settings, http=state.http, redis=state.redis)


async def poll_tick(ctx: dict[str, Any]) -> int:
    """Queue a poll for every pulled source that is due now; returns how many were queued."""
    state = ctx["state"]
    ruleset = state.rules.current
    pulls = {s.id: s.pull for s in ruleset.sources.values() if s.pull is not None}
    if not pulls:
        return 0
    deps = _deps(state)
    now = deps.clock()
    await store.sync_states(state.engine, pulls, now)
    due = await store.due_sources(state.engine, pulls, now)
    redis = state.redis if state.redis is not None else ctx["redis"]
    for source, leases, due_at in due:
        await queue.enqueuer(redis)(
            queue.POLL_SOURCE, source, job_id=queue.JobId.poll(source, leases, int(due_at.timestamp()))
        )
    return len(due)


async def poll_source(ctx: dict[str, Any], source_id: str) -> str:
    """Poll one source (or fire its schedule) if it is still due and free; returns the outcome."""
    state = ctx["state"]
    ruleset = state.rules.current
    source = ruleset.sources.get(source_id)
    if source is None or source.pull is None:
        return "gone"
    deps = _deps(state)
    if deps.redis is None:
        deps.redis = ctx.get("redis")
    report = await poll_once(deps, source, ruleset)
    return report.outcome
