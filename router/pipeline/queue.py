"""How work reaches the workers: the one place that knows how new events and runs are queued.

- ``events_stored(redis, ids)``: events were committed with status ``received``; have them routed. The
  database is their queue (workers claim ``received`` events in batches, router/pipeline/consumer.py); this only
  rings the workers' doorbell, one Redis PUBLISH per committed batch, so a worker wakes at once.
- ``enqueue_run(redis, run_id, job_id=, defer=)``: execute (resume) one run, now or after ``defer``
  seconds, as an arq job (retries, replays, hand-backs).

Callers (ingest, emit steps, polling, replay) use these and nothing else, so the queueing mechanism
can change without touching them.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

WAKE_CHANNEL = "router:events:stored"


async def events_stored(redis: Any, ids: Collection[str]) -> None:
    """Tell the workers that ``ids`` were committed and wait to be routed (one message, however many)."""
    if ids:
        await redis.publish(WAKE_CHANNEL, len(ids))


async def enqueue_run(redis: Any, run_id: str, *, job_id: str, defer: float | None = None) -> None:
    """Queue the execution of one run under ``job_id`` (a job id already queued is not queued twice)."""
    await redis.enqueue_job("execute_run", run_id, _job_id=job_id, _defer_by=defer)
