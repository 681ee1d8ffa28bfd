"""Operating commands: `router worker --check`, and the metrics folder `router serve` prepares for its
processes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import click

from router.settings import Settings


def worker_check(settings: Settings) -> None:
    """`router worker --check`: a worker on this host has beaten within ROUTER_HEARTBEAT_TIMEOUT and reaches
    its database; the message says what is wrong otherwise."""
    import socket
    import time

    from router import heartbeat
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
