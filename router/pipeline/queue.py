"""How work reaches the workers: job names, job ids and the one way each kind of work is queued.

- ``events_stored(redis, ids)``: events were committed with status ``received``; have them routed. The
  database is their queue (workers claim ``received`` events in batches, router/pipeline/consumer.py); this only
  rings the workers' doorbell, one Redis PUBLISH per committed batch, so a worker wakes at once.
- ``enqueue_event(enqueue, event_id)``: route one stored event as an arq job (the reconciler, a test send).
- ``enqueue_run(enqueue, run_id, job_id=, defer=)``: execute (resume) one run, now or after ``defer``
  seconds, as an arq job (retries, replays, hand-backs).
- ``JobId``: every job id, in one place. arq queues a job id once: the id says which attempt of what it
  is, so the same work asked for twice (a retry and the reconciler) is queued once.
- ``Enqueue``: what callers hold (``enqueuer(redis)`` makes one): ``await enqueue(name, *args, job_id=, defer=)``.

Callers (ingest, emit steps, polling, replay, the UI and the CLI) use these and nothing else, so the
queueing mechanism can change without touching them.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final, Protocol

WAKE_CHANNEL = "router:events:stored"

# arq job names: the worker registers the functions of these names (router/worker.py).
PROCESS_EVENT: Final = "process_event"
EXECUTE_RUN: Final = "execute_run"
POLL_SOURCE: Final = "poll_source"


class Enqueue(Protocol):
    """Queue the job ``function(*args)`` under ``job_id`` (once), now or after ``defer`` seconds."""

    async def __call__(self, function: str, *args: Any, job_id: str, defer: float | None = None) -> None: ...


class JobId:
    """The ids of queued jobs. A run's ids all start ``run:{run_id}:``, so Redis shows whose job it is."""

    @staticmethod
    def event(event_id: str) -> str:
        """Route one event (once, however many ask)."""
        return f"event:{event_id}"

    @staticmethod
    def attempt(run_id: str, attempt: int) -> str:
        """The run's ``attempt``-th try (1: its first job, after a replay or as a new run)."""
        return f"run:{run_id}:{attempt}"

    @staticmethod
    def retry(run_id: str, attempt: int) -> str:
        """A failed or dead run retried by hand (its ``attempt``-th retry)."""
        return f"run:{run_id}:retry:{attempt}"

    @staticmethod
    def held(run_id: str, until: int) -> str:
        """Its destination failing: try again at the Unix time ``until``."""
        return f"run:{run_id}:held:{until}"

    @staticmethod
    def handoff(run_id: str, step_row_id: str) -> str:
        """The rest of a run, from the step row ``step_row_id``, left to a new job (past half a job's time)."""
        return f"run:{run_id}:from:{step_row_id}"

    @staticmethod
    def resume(run_id: str, stamp: int) -> str:
        """A held run whose destination was resumed at ``stamp``."""
        return f"run:{run_id}:resume:{stamp}"

    @staticmethod
    def handback(run_id: str, stamp: int) -> str:
        """A run a stopping consumer handed back at ``stamp``."""
        return f"run:{run_id}:handback:{stamp}"

    @staticmethod
    def now(run_id: str, attempt: int, stamp: int) -> str:
        """**Retry now** of a waiting run: its ``attempt``-th attempt, asked for at ``stamp``."""
        return f"run:{run_id}:now:{attempt}:{stamp}"

    @staticmethod
    def due(run_id: str) -> str:
        """The reconciler: a retry due whose job was lost (and no job id recorded)."""
        return f"run:{run_id}:due"

    @staticmethod
    def stuck(run_id: str, minute: int) -> str:
        """The reconciler: a run left pending or running (one job per minute at most)."""
        return f"run:{run_id}:stuck:{minute}"

    @staticmethod
    def poll(source: str, leases: int, due_at: int) -> str:
        """One poll of a source: its lease count and the Unix time it was due."""
        return f"poll:{source}:{leases}:{due_at}"


def enqueuer(redis: Any) -> Enqueue:
    """``enqueue(function, *args, job_id=, defer=)`` on an arq Redis: the one way work is queued."""

    async def enqueue(function: str, *args: Any, job_id: str, defer: float | None = None) -> None:
        await redis.enqueue_job(function, *args, _job_id=job_id, _defer_by=defer)

    return enqueue


async def events_stored(redis: Any, ids: Collection[str]) -> None:
    """Tell the workers that ``ids`` were committed and wait to be routed (one message, however many)."""
    if ids:
        await redis.publish(WAKE_CHANNEL, len(ids))


async def enqueue_event(enqueue: Enqueue, event_id: str) -> None:
    """Route one stored event as a job of its own (the consumer claims the others in batches)."""
    await enqueue(PROCESS_EVENT, event_id, job_id=JobId.event(event_id))


async def enqueue_run(enqueue: Enqueue, run_id: str, *, job_id: str, defer: float | None = None) -> None:
    """Queue the execution of one run under ``job_id`` (a job id already queued is not queued twice)."""
    await enqueue(EXECUTE_RUN, run_id, job_id=job_id, defer=defer)
