"""The web application: ingest, the inbox, the JSON API and health, wired in one factory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from litestar import Litestar
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig

from router import __version__, db
from router.api import destinations, events, health, hooks, runs
from router.api import rules as rules_api
from router.api.problems import on_http_error, on_ingest_error, on_unexpected
from router.capture import EventWriter
from router.errors import IngestError
from router.jobs import RulesHolder
from router.settings import Settings, get_settings
from router.worker import build_worker, close_state, create_redis, create_state, load_rules

log = structlog.get_logger("router.app")


def create_app(
    settings: Settings | None = None,
    *,
    embedded_worker: bool = False,
    migrate: bool = True,
    rules: RulesHolder | None = None,
) -> Litestar:
    """Build the app. ``embedded_worker`` runs an arq worker in the same process (``router dev``)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        state = app.state
        holder = rules or load_rules(settings)
        engine = db.create_engine(settings.database_url)
        if migrate:
            await db.migrate(engine)
        redis = create_redis(settings.redis_url)

        async def enqueue(ids: list[str]) -> None:
            for event_id in ids:
                await redis.enqueue_job("process_event", event_id, _job_id=f"event:{event_id}")

        writer = EventWriter(engine, on_committed=enqueue)
        writer.start()
        from router.reload import watch_rules  # hot reload: swap the rule set when a rule file changes

        watcher = watch_rules(settings, holder)
        state.update(
            settings=settings, engine=engine, sessions=db.sessionmaker(engine), rules=holder, redis=redis, writer=writer
        )
        worker_task: asyncio.Task[None] | None = None
        worker: Any = None
        if embedded_worker:
            wstate = await create_state(settings, holder, migrate=False)
            worker = build_worker(settings, state=wstate, handle_signals=False)
            worker_task = asyncio.create_task(worker.async_run(), name="embedded-worker")
        try:
            yield
        finally:
            await watcher.stop()
            await writer.stop()
            if worker is not None and worker_task is not None:
                worker_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await worker_task
                await worker.close()
                await close_state(wstate)
            await redis.aclose(close_connection_pool=True)
            await engine.dispose()

    return Litestar(
        route_handlers=[
            hooks.receive,
            hooks.catch,
            hooks.list_inbox,
            events.list_events,
            events.get_event,
            events.explain_event,
            rules_api.list_rules,
            rules_api.dry_run_rule,
            rules_api.what_if_rule,
            health.health,
            runs.list_dead_letters,
            runs.replay,
            runs.retry,
            runs.retry_bulk,
            destinations.list_destinations,
            destinations.resume_destination,
        ],
        lifespan=[lifespan],
        exception_handlers={IngestError: on_ingest_error, HTTPException: on_http_error, Exception: on_unexpected},
        openapi_config=OpenAPIConfig(title="Event Router", version=__version__, path="/schema"),
        request_max_body_size=settings.max_body_bytes,
        debug=False,
    )
