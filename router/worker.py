"""The arq worker: its settings, its start-up (database, HTTP client, rules) and how to run it."""

from __future__ import annotations

import asyncio
import contextlib
from signal import Signals
from typing import Any

import structlog
from arq import cron
from arq.connections import RedisSettings
from arq.worker import Worker, func
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from router.errors import RuleSetError
from router.ops import chores as ops
from router.pipeline import queue
from router.pipeline.consumer import Consumer
from router.pipeline.jobs import execute_run, process_event, sweep
from router.pipeline.ledger import LedgerWriter
from router.pipeline.outbound import create_client
from router.pipeline.record import LEDGER_ORDER
from router.polling.jobs import poll_source, poll_tick
from router.records import db
from router.records.transactor import Transactor
from router.rules.holder import RulesHolder
from router.runtime import WorkerState
from router.settings import Settings

log = structlog.get_logger("router.worker")

QUEUE = "router:queue"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class RouterWorker(Worker):
    """arq's worker (retries, resumed runs, the reconciler's cron) with the batch consumer beside it.

    New events do not go through arq: the consumer (router/pipeline/consumer.py) claims them in batches. This
    class ties the consumer to arq's life cycle: SIGTERM stops both from taking work and waits for both
    (up to ROUTER_SHUTDOWN_GRACE), and what is still running after that is cancelled and handed back.

    One waste of arq's is removed too: each poll re-reads the head of the queue, which holds the jobs
    this worker is already running, and arq spends three Redis round trips on each before skipping it;
    our own running jobs are skipped locally.
    """

    consumer: Consumer | None = None

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        running = self.tasks
        fresh = [j for j in job_ids if (t := running.get(j.decode())) is None or t.done()]
        await super().start_jobs(fresh)

    def handle_sig_wait_for_completion(self, signum: Signals) -> None:
        if self.consumer is not None:
            self.consumer.stop_claiming()
        super().handle_sig_wait_for_completion(signum)

    async def _sleep_until_tasks_complete(self) -> None:
        await super()._sleep_until_tasks_complete()
        if self.consumer is not None:
            await self.consumer.wait_idle()

    def handle_sig(self, signum: Signals) -> None:
        if self.consumer is not None:
            self.consumer.stop_claiming()
        super().handle_sig(signum)

    async def close(self) -> None:
        """arq's ``Worker.close``, except that a job cancelled by the stop does not cut it short.

        arq gathers its jobs without ``return_exceptions``: a job cancelled between two of arq's own
        awaits (outside the try around the job function) re-raised its CancelledError there, and the
        rest was skipped — our shutdown hook (the consumer's hand-back, the heartbeat and alert tasks),
        deleting the health-check key and closing the Redis pool. Redis gone by then only skips the key,
        which expires by itself.
        """
        if not self._handle_signals:
            self.handle_sig(Signals.SIGUSR1)
        if not self._pool:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self.pool.delete(self.health_check_key)
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        await self.pool.aclose(close_connection_pool=True)
        self._pool = None


async def load_rules(
    settings: Settings, holder: RulesHolder | None = None, *, sessions: async_sessionmaker[AsyncSession] | None = None
) -> RulesHolder:
    """Load the rule set into a holder; on errors the holder keeps what it had and lists them.

    With ``sessions`` the set includes the UI rules and stored secrets of the database (router.rules.merged).
    """
    from router.rules.merged import load_all, read_stamp

    holder = holder or RulesHolder()
    try:
        ui_stamp = await read_stamp(sessions)
        holder.current, holder.errors = await load_all(settings, sessions)
        holder.loaded, holder.ui_stamp = True, ui_stamp
        for warning in holder.current.warnings:
            log.warning("rules_warning", message=warning)
    except RuleSetError as exc:
        holder.errors = [str(e) for e in exc.errors]
    for line in holder.errors:
        log.error("rules_error", message=line)
    return holder


async def create_state(settings: Settings, rules: RulesHolder | None = None, *, migrate: bool = True) -> WorkerState:
    engine = db.create_engine(settings.database_url)
    if migrate:
        await db.migrate(engine)
    sessions = db.sessionmaker(engine)
    return WorkerState(
        settings=settings,
        engine=engine,
        sessions=sessions,
        http=create_client(settings),
        rules=rules or await load_rules(settings, sessions=sessions),
    )


async def close_state(state: WorkerState) -> None:
    if state.consumer is not None:
        await state.consumer.close()
    if state.deliverer.ledger is not None:
        await state.deliverer.ledger.stop()
    if state.writes is not None:
        await state.writes.close()
    await state.http.aclose()
    await state.engine.dispose()


def redis_settings(url: str | None) -> RedisSettings:
    return RedisSettings.from_dsn(url or DEFAULT_REDIS_URL)


def build_worker(
    settings: Settings,
    *,
    state: WorkerState | None = None,
    burst: bool = False,
    handle_signals: bool = True,
    redis_pool: Any = None,
) -> RouterWorker:
    """An arq worker tuned for latency: it polls every ROUTER_POLL_DELAY (never arq's 0.5 s default)."""
    own_state = state is None

    async def startup(ctx: dict[str, Any]) -> None:
        ws: WorkerState = state if state is not None else await create_state(settings)
        ctx["state"] = ws
        ws.attach_redis(ctx["redis"])
        if own_state and not burst:  # a standalone worker watches the rules itself (`router dev` shares the web's)
            from router.rules.reload import watch_rules

            ctx["rules_watcher"] = watch_rules(settings, ws.rules, ws.sessions)
        if burst:  # no cron and no consumer in burst mode: sweep once (it queues what is stored), then drain
            await sweep(ctx)
            return
        ws.writes = Transactor(ws.engine, name="worker")
        ws.deliverer.ledger = LedgerWriter(ws.writes, LEDGER_ORDER).start()
        ws.consumer = worker.consumer = Consumer(ws, concurrency=settings.worker_concurrency).start()
        ctx["ops"] = await ops.start(settings, ws)  # heartbeat, metrics, alerts, prune

    async def shutdown(ctx: dict[str, Any]) -> None:
        await ops.stop(ctx.get("ops"))
        if "rules_watcher" in ctx:
            await ctx["rules_watcher"].stop()
        ws: WorkerState | None = ctx.get("state")
        if ws is not None and ws.consumer is not None:
            await ws.consumer.close()  # cancels and hands back what is still running
            ws.consumer = worker.consumer = None
        if ws is not None and ws.deliverer.ledger is not None:
            await ws.deliverer.ledger.stop()
            ws.deliverer.ledger = None
        if ws is not None and ws.writes is not None:
            await ws.writes.close()
            ws.writes = None
        if own_state and ws is not None:
            await close_state(ws)

    # arq cron takes a set of seconds; use the largest divisor of 60 not above the interval, so sweeps are even.
    step = max(d for d in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60) if d <= max(1, settings.sweep_interval))
    worker = RouterWorker(
        functions=[
            func(process_event, name=queue.PROCESS_EVENT, max_tries=20),
            func(execute_run, name=queue.EXECUTE_RUN, max_tries=20),
            func(poll_source, name=queue.POLL_SOURCE, max_tries=3),
        ],
        cron_jobs=None
        if burst
        else [
            cron(sweep, second=set(range(0, 60, step)), run_at_startup=True, timeout=settings.job_timeout),
            cron(poll_tick, second=set(range(60)), run_at_startup=True, timeout=settings.job_timeout),  # polling
        ],
        queue_name=QUEUE,
        redis_settings=redis_settings(settings.redis_url),
        redis_pool=redis_pool,
        on_startup=startup,
        on_shutdown=shutdown,
        burst=burst,
        handle_signals=handle_signals,
        poll_delay=settings.poll_delay,
        max_jobs=settings.worker_max_jobs,
        keep_result=0,
        job_timeout=settings.job_timeout,
        health_check_interval=10,
        # SIGTERM: stop taking jobs, let running ones finish for this long, then cancel them; a cancelled
        # job goes back on the queue and resumes from the ledger (each step is committed as it ends).
        job_completion_wait=settings.shutdown_grace,
        log_results=False,
    )
    return worker


def create_redis(url: str | None) -> Any:
    """An arq Redis client on our queue; it connects lazily, so a Redis outage does not stop the web."""
    from arq.connections import ArqRedis
    from redis.asyncio import ConnectionPool

    return ArqRedis(ConnectionPool.from_url(url or DEFAULT_REDIS_URL), default_queue_name=QUEUE)
