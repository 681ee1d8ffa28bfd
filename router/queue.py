"""How work reaches the workers: the one place that knows how new events and runs are queued.

- ``events_stored(redis, ids)``: events were committed with status ``received``; have them routed.
- ``enqueue_run(redis, run_id, job_id=, defer=)``: execute (resume) one run, now or after ``defer`` seconds.

Callers (ingest, emit steps, polling, replay) use these and nothing else, so the queueing mechanism
can change without touching them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


async def events_stored(redis: Any, ids: Iterable[str]) -> None:
    """Queue the routing of committed events (one job per event, keyed by its id: never doubled)."""
    for event_id in ids:
        await redis.enqueue_job("process_event", event_id, _job_id=f"event:{event_id}")


async def enqueue_run(redis: Any, run_id: str, *, job_id: str, defer: float | None = None) -> None:
    """Queue the execution of one run under ``job_id`` (a job id already queued is not queued twice)."""
    await redis.enqueue_job("execute_run", run_id, _job_id=job_id, _defer_by=defer)
