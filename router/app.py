"""The web application: ingest, the inbox, the JSON API and health, wired in one factory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from litestar import Litestar, Router
from litestar.di import Provide
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import YamlRenderPlugin
from litestar.static_files import create_static_files_router

from router import __version__, ui
from router.access.guard import authorize, security_headers
from router.api import alerts as alerts_api
from router.api import audit as audit_api
from router.api import destinations, events, health, hooks, runs, sources, users
from router.api import metrics as metrics_api
from router.api import rejections as rejections_api
from router.api import rules as rules_api
from router.api import secrets as secrets_api
from router.api import uirules as uirules_api
from router.api.apidocs import VendoredRedoc
from router.api.problems import on_client_error, on_http_error, on_unexpected
from router.errors import ClientError
from router.pipeline import queue
from router.pipeline.store import EventWriter
from router.records import db, rejections
from router.records.transactor import Transactor
from router.rules.holder import RulesHolder
from router.runtime import AppState, provide_runtime
from router.settings import Settings, get_settings
from router.ui.errors import on_forbidden, on_not_signed_in, on_page_error
from router.worker import build_worker, close_state, create_redis, create_state, load_rules

log = structlog.get_logger("router.app")


def create_app(
    settings: Settings | None = None,
    *,
    embedded_worker: bool = False,
    migrate: bool = True,
    rules: RulesHolder | None = None,
    ui_pages: bool = True,
) -> Litestar:
    """Build the app. ``embedded_worker`` runs an arq worker in the same process (``router dev``).

    ``ui_pages=False`` leaves the web UI out (ingest and the API only): tests that need no page use it,
    since registering the UI's handlers is most of the cost of building an app.
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        state = app.state
        engine = db.create_engine(settings.database_url)
        if migrate:
            await db.migrate(engine)
        sessions = db.sessionmaker(engine)
        holder = rules or await load_rules(settings, sessions=sessions)  # rule files + the UI rules
        redis = create_redis(settings.redis_url)

        async def enqueue(ids: list[str]) -> None:
            await queue.events_stored(redis, ids)

        # ingest's own writer, fsyncing each group commit (SQLite: synchronous=FULL, in a thread of its own)
        ingest_writes = Transactor(engine, name="ingest", durable=True)
        writer = EventWriter(ingest_writes, on_committed=enqueue)
        writer.start()
        from router.rules.reload import watch_rules  # hot reload: swap the rule set when a rule file or UI rule changes

        watcher = watch_rules(settings, holder, sessions)
        runtime = AppState(settings, engine, sessions, holder, redis, writer, watcher)
        # handlers take `runtime` (a dependency, below); the guard, ingest (its ASGI answer), /metrics and the
        # rejection log read the same objects from the app's state by name
        state.update(runtime.as_dict(), runtime=runtime)
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
                try:  # RouterWorker.close: runs our shutdown hook and closes its Redis pool
                    await worker.close()
                except Exception as exc:  # the web's own resources below are closed all the same
                    log.warning("worker_close_failed", error=f"{type(exc).__name__}: {exc}")
                await close_state(wstate)
            await redis.aclose(close_connection_pool=True)
            await ingest_writes.close()
            await engine.dispose()

    def ui_handlers() -> list[Any]:
        static = create_static_files_router(
            path="/static", directories=[ui.web_dir() / "static"], opt={"public": True}, include_in_schema=False
        )
        return [ui.ui_router(), static]

    # Every handler but ingest sits behind the one guard (router/access/guard.py). Ingest is authenticated by its
    # source's signature scheme, and Litestar copies the handler object for each guard call it makes: on
    # the hottest route that copy is measurable, so the route has no guard to call.
    guarded = Router(
        path="/",
        guards=[authorize],
        route_handlers=[
            hooks.catch,
            hooks.list_inbox,
            events.list_events,
            events.get_event,
            events.explain_event,
            rules_api.list_rules,
            rules_api.dry_run_rule,
            rules_api.what_if_rule,
            health.health,
            health.live,
            health.ready,
            metrics_api.scrape,
            alerts_api.list_alerts,
            runs.list_dead_letters,
            runs.replay,
            runs.retry,
            runs.retry_bulk,
            runs.retry_now,
            destinations.list_destinations,
            destinations.resume_destination,
            users.me,
            users.list_users,
            users.create_user,
            users.update_user,
            users.list_tokens,
            users.create_token,
            users.revoke_token,
            secrets_api.list_secrets,
            secrets_api.set_secret,
            secrets_api.delete_secret,
            audit_api.list_audit,
            sources.source_polls,
            rejections_api.list_rejected,
            *uirules_api.HANDLERS,
            *(ui_handlers() if ui_pages else []),
        ],
    )
    return Litestar(
        route_handlers=[hooks.receive, guarded],
        dependencies={"runtime": Provide(provide_runtime, sync_to_thread=False)},
        before_send=[security_headers],  # every response, the 404 of an unknown path too
        template_config=ui.template_config(),
        lifespan=[lifespan, rejections.lifespan],  # the second starts after the first set up the engine
        exception_handlers={
            ClientError: on_client_error,
            NotAuthorizedException: on_not_signed_in,
            PermissionDeniedException: on_forbidden,
            HTTPException: on_page_error(on_http_error),
            Exception: on_unexpected,
        },
        openapi_config=OpenAPIConfig(
            title="Event Router",
            version=__version__,
            path="/schema",
            render_plugins=[VendoredRedoc(), YamlRenderPlugin()],  # served from /static: works offline
        ),
        request_max_body_size=settings.max_body_bytes,
        logging_config=None,  # every line goes through router/logs.py, not a root handler of Litestar's
        debug=False,
    )
