"""The batch consumer: a worker takes received events in batches and delivers them concurrently.

    doorbell (Redis pub/sub) or a look every POLL_SECONDS
      → claim up to N events in one transaction (router/pipeline/claim.py: routed, runs created)
      → one task per event runs its runs' steps (router/pipeline/delivery.py), up to ``concurrency`` at once
      → each step's record is group-committed with others' (router/pipeline/ledger.py) before the next step

The database is the queue of new events: nothing has to be enqueued for an event to be delivered, so an
event committed while Redis was down is delivered all the same. Redis only rings the doorbell, so a
worker wakes within a millisecond of a commit instead of polling; retries and resumed runs stay arq jobs.

On shutdown the consumer stops claiming, lets the runs in flight finish within the grace period, and
hands the ones it had to cancel back as ``execute_run`` jobs, so another worker resumes them at once
from the ledger (same idempotency keys).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select, update

from router.pipeline import queue
from router.pipeline.claim import Claimed, claim_batch
from router.pipeline.ledger import describe
from router.pipeline.record import RunPlan
from router.records.models import Event, Run, utcnow
from router.records.status import EventStatus, RunStatus

if TYPE_CHECKING:
    from router.runtime import WorkerState

log = structlog.get_logger("router.consumer")

BATCH = 128
POLL_SECONDS = 0.5  # a look at the database when no doorbell rang (Redis away, or a message lost)
_ANY_RECEIVED = select(Event.id).where(Event.status == EventStatus.RECEIVED).limit(1)


class Consumer:
    """Claims and delivers received events for one worker process."""

    def __init__(self, state: WorkerState, *, concurrency: int, batch: int = BATCH) -> None:
        self.state = state
        self.concurrency = concurrency
        self.batch = batch
        self.inflight: dict[asyncio.Task[None], list[str]] = {}  # task -> its run ids
        self.claiming = False
        self._wake = asyncio.Event()
        self._slot = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.claims = 0
        self.events = 0

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> Consumer:
        self.claiming = True
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="consumer-claims"),
            asyncio.create_task(self._doorbell(), name="consumer-doorbell"),
        ]
        return self

    def stop_claiming(self) -> None:
        self.claiming = False
        self._wake.set()

    async def wait_idle(self) -> None:
        """Return when no run is in flight (used during a graceful shutdown)."""
        while self.inflight:
            await asyncio.wait(list(self.inflight), return_when=asyncio.FIRST_COMPLETED)

    async def close(self) -> None:
        """Stop claiming, cancel what still runs and hand it back; never raises."""
        self.stop_claiming()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        cancelled = [run_id for task, runs in self.inflight.items() if not task.done() for run_id in runs]
        for task in list(self.inflight):
            task.cancel()
        if self.inflight:
            await asyncio.gather(*self.inflight, return_exceptions=True)
        if cancelled:
            await self._hand_back(cancelled)

    def wake(self) -> None:
        self._wake.set()

    # -- claiming --------------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        looked = True  # the first pass claims at once: work may have waited for this worker
        while self.claiming:
            free = self.concurrency - len(self.inflight)
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            if not looked:
                await self._wait_for_work()
                if not self.claiming:
                    return
            self._wake.clear()
            try:
                claimed = await self._claim(min(free, self.batch))
            except Exception as exc:  # the database is away: look again shortly
                log.warning("claim_failed", error=describe(exc))
                await asyncio.sleep(POLL_SECONDS)
                looked = False
                continue
            self._start(claimed)
            # a full batch means more may be waiting: claim again without waiting for the doorbell
            looked = claimed.events >= min(free, self.batch)

    async def _wait_for_work(self) -> None:
        """Wait for the doorbell; after POLL_SECONDS without one, look in the database (cheaply)."""
        while self.claiming:
            try:
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
                return
            except TimeoutError:
                pass
            try:
                async with self.state.engine.connect() as conn:
                    if (await conn.execute(_ANY_RECEIVED)).first() is not None:
                        return
            except Exception as exc:
                log.debug("look_failed", error=str(exc))

    async def _claim(self, limit: int) -> Claimed:
        ruleset = self.state.rules.current
        transactor = self.state.writes
        assert transactor is not None
        claimed = await transactor.run(claim_batch, ruleset, limit)
        if claimed.events:
            self.claims += 1
            self.events += claimed.events
        return claimed

    def _start(self, claimed: Claimed) -> None:
        by_event: dict[str, list[RunPlan]] = defaultdict(list)
        for plan in claimed.plans:
            by_event[plan.event["id"]].append(plan)
        for event_id, plans in by_event.items():
            task = asyncio.create_task(self._deliver(event_id, plans))
            self.inflight[task] = [p.id for p in plans]
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.inflight.pop(task, None)
        self._slot.set()
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("delivery_task_failed", error=f"{type(exc).__name__}: {exc}")

    async def _deliver(self, event_id: str, plans: list[RunPlan]) -> None:
        state = self.state
        ruleset = state.rules.current
        if len(plans) == 1:  # the common case: no gather, no extra task
            await state.deliverer.run(plans[0], ruleset.rules.get(plans[0].rule_id), ruleset)
        else:
            await asyncio.gather(
                *(state.deliverer.run(plan, ruleset.rules.get(plan.rule_id), ruleset) for plan in plans)
            )
        if not plans[0].finishes_event:
            await state.deliverer.settle_event(event_id)

    # -- the doorbell ----------------------------------------------------------------------------
    async def _doorbell(self) -> None:
        """Listen on the wake channel; a lost connection is retried (the database look covers the gap)."""
        while True:
            redis = self.state.redis
            if redis is None:
                await asyncio.sleep(POLL_SECONDS)
                continue
            pubsub = redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(queue.WAKE_CHANNEL)
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("doorbell_lost", error=str(exc))
                await asyncio.sleep(POLL_SECONDS)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    # -- shutdown --------------------------------------------------------------------------------
    async def _hand_back(self, run_ids: list[str]) -> None:
        """Runs cut off by shutdown: mark them due now and queue them, so another worker resumes them."""
        stamp = int(time.time())
        try:
            async with self.state.engine.begin() as conn:
                await conn.execute(
                    update(Run)
                    .where(Run.id.in_(run_ids), Run.status.in_((RunStatus.RUNNING, RunStatus.PENDING)))
                    .values(status=RunStatus.PENDING, next_attempt_at=utcnow())
                )
            for run_id in run_ids:
                await queue.enqueue_run(self.state.enqueue, run_id, job_id=queue.JobId.run(run_id, "handback", stamp))
            log.info("runs_handed_back", runs=len(run_ids))
        except Exception as exc:  # the reconciler finds them once they are stale
            log.warning("hand_back_failed", runs=len(run_ids), error=str(exc))

    def stats(self) -> dict[str, Any]:
        return {"claims": self.claims, "events": self.events, "in_flight": len(self.inflight)}
