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
from typing import Any, Final, Literal, Protocol

WAKE_CHANNEL = "router:events:stored"

# arq job names: the worker registers the functions of these names (router/worker.py).
PROCESS_EVENT: Final = "process_event"
EXECUTE_RUN: Final = "execute_run"
POLL_SOURCE: Final = "poll_source"


class Enqueue(Protocol):
    """Queue the job ``function(*args)`` under ``job_id`` (once), now or after ``defer`` seconds."""

    async def __call__(self, function: str, *args: Any, job_id: str, defer: float | None = None) -> None: ...


RunJob = Literal["retry", "held", "from", "resume", "handback", "now", "due", "stuck"]
"""Why a run's job was queued: the word after ``run:{run_id}:`` in its id (``JobId.run``)."""


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
    def run(run_id: str, why: RunJob, *marks: int | str) -> str:
        """Any other job of a run: ``run:{run_id}:{why}:{marks…}``. By ``why``, with its marks:

        - ``retry``, the retry's number: a failed or dead run retried by hand;
        - ``held``, the Unix time to try again at: its destination is failing;
        - ``from``, a step row id: the rest of a run, from that step, left to a new job (past half a job's time);
        - ``resume``, the time it was resumed: a held run whose destination was resumed;
        - ``handback``, the time it was handed back: a run a stopping consumer handed back;
        - ``now``, the attempt's number and the time it was asked for: **Retry now** of a waiting run;
        - ``due``, none: the reconciler, for a retry due whose job was lost (and no job id recorded);
        - ``stuck``, the minute: the reconciler, for a run left pending or running (one job a minute at most).
        """
        return ":".join(("run", run_id, why, *map(str, marks)))

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
