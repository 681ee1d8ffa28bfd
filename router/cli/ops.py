"""Operating commands: `router db check`, `router db prune`, `router worker --check`, and the metrics folder
`router serve` prepares for its processes."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import click

from router.cli.common import prepare_database, safe_url, settings_or_exit
from router.errors import RuleSetError
from router.settings import Settings


@click.command("check")
def db_check() -> None:
    """Fail (exit 1) when the schema lags this version.

    Run `router db upgrade` to bring it up to date.
    """
    from router.records import db

    settings = settings_or_exit()
    try:
        problems = asyncio.run(db.schema_problems(settings.database_url))
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise click.ClickException(
            f"cannot open the database at {safe_url(settings.database_url)} (ROUTER_DATABASE_URL): {reason}"
        ) from None
    if problems:
        for line in problems:
            click.echo(line, err=True)
        raise click.ClickException(
            f"the schema at {safe_url(settings.database_url)} lags the code: run `router db upgrade`"
        )
    click.echo(f"database at {safe_url(settings.database_url)} matches this version's schema")


@click.command("prune")
def db_prune() -> None:
    """Prune events past their retention now.

    ROUTER_RETENTION_DAYS, ROUTER_RETENTION_MAX_EVENTS and the sources' `retention`.
    """
    from router.records import db, retention
    from router.rules.ruleset import load_ruleset

    settings = settings_or_exit()
    prepare_database(settings)
    try:
        sources = load_ruleset(settings.rules_dir, allow_missing_secrets=True).sources
    except RuleSetError as exc:
        raise click.ClickException(f"cannot read the rule files for their `retention`:\n{exc}") from None
    default = retention.Policy(settings.retention_days, settings.retention_max_events)
    if not default.active and not retention.policies(default, sources):
        raise click.ClickException(
            "nothing to prune: set ROUTER_RETENTION_DAYS or ROUTER_RETENTION_MAX_EVENTS, or a source's `retention`"
        )

    async def run() -> retention.Report:
        engine = db.create_engine(settings.database_url)
        try:
            return await retention.prune(engine, default, sources, max_batch=settings.retention_batch)
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    click.echo(json.dumps(report.as_dict()))


def worker_check(settings: Settings) -> None:
    """`router worker --check`: a worker on this host has beaten within ROUTER_HEARTBEAT_TIMEOUT and reaches
    its database; the message says what is wrong otherwise."""
    import socket
    import time

    from router.ops import heartbeat
    from router.worker import create_redis

    async def read() -> list[dict[str, Any]]:
        redis = create_redis(settings.redis_url)
        try:
            return await asyncio.wait_for(heartbeat.alive(redis), timeout=5)
        finally:
            await redis.aclose(close_connection_pool=True)

    try:
        found = asyncio.run(read())
    except Exception as exc:
        raise click.ClickException(f"cannot read worker heartbeats from Redis (ROUTER_REDIS_URL): {exc}") from None
    host = socket.gethostname()
    mine = [w for w in found if w.get("host") == host]
    if not mine:
        others = ", ".join(w["id"] for w in found) or "none"
        raise click.ClickException(
            f"no worker on host {host} has beaten in the last {settings.heartbeat_timeout:g} s "
            f"(ROUTER_HEARTBEAT_TIMEOUT); workers alive elsewhere: {others}"
        )
    bad = [w for w in mine if w.get("database") != "ok"]
    if bad and len(bad) == len(mine):
        raise click.ClickException(f"worker {bad[0]['id']} cannot reach its database: {bad[0]['database']}")
    for w in mine:
        click.echo(f"ok: worker {w['id']} beat {max(0.0, time.time() - float(w['at'])):.1f} s ago")


def metrics_dir() -> tuple[str, bool]:
    """The folder where the web processes keep their metrics (prometheus-client's multiprocess mode).

    PROMETHEUS_MULTIPROC_DIR when set (emptied of a previous run's files), else a private temporary folder.
    Returns it and whether it is ours to delete.
    """
    import tempfile

    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):  # counters of processes that are gone would be added to ours
            stale.unlink(missing_ok=True)
        return given, False
    made = tempfile.mkdtemp(prefix="router-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made  # inherited by the web processes uvicorn starts
    return made, True


DB_COMMANDS = [db_check, db_prune]
