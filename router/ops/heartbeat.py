"""Worker heartbeats in Redis: each worker says every few seconds that it is alive, and how its database is.

A heartbeat is one key per worker process, ``router:worker:<host>:<pid>``, written with a time to live of
``ROUTER_HEARTBEAT_TIMEOUT``: a key that exists is a worker seen within that many seconds, by Redis's own
clock (no clock of ours is compared). The set ``router:workers`` lists the ids, so reading them needs no
SCAN; ids whose key has expired are dropped from it as they are found.

``/health/ready`` needs at least one live heartbeat; ``router worker --check`` needs one from its own host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from router import __version__
from router.records import db

log = structlog.get_logger("router.heartbeat")

KEY_PREFIX = "router:worker:"
INDEX = "router:workers"


def interval(timeout: float) -> float:
    """Beat three times per timeout, and at least every 5 s."""
    return min(5.0, timeout / 3)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def beat(redis: Any, info: dict[str, Any], timeout: float) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(KEY_PREFIX + info["id"], json.dumps(info), px=int(timeout * 1000))
        pipe.sadd(INDEX, info["id"])
        await pipe.execute()


async def alive(redis: Any) -> list[dict[str, Any]]:
    """The workers whose heartbeat has not expired, oldest-started first."""
    ids = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in await redis.smembers(INDEX))
    if not ids:
        return []
    values = await redis.mget([KEY_PREFIX + i for i in ids])
    out, gone = [], []
    for worker, value in zip(ids, values, strict=True):
        if value is None:
            gone.append(worker)
        else:
            out.append(json.loads(value))
    if gone:
        await redis.srem(INDEX, *gone)
    return sorted(out, key=lambda w: (w.get("started_at", 0), w["id"]))


async def database_state(engine: AsyncEngine) -> str:
    try:
        await asyncio.wait_for(db.ping(engine), timeout=2)
        return "ok"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def run(redis: Any, engine: AsyncEngine, timeout: float, stop: asyncio.Event) -> None:
    """Beat until ``stop`` is set; a Redis that does not answer is retried at the next beat."""
    started = time.time()
    ident = worker_id()
    failing = False
    while not stop.is_set():
        info = {
            "id": ident,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "version": __version__,
            "started_at": started,
            "at": time.time(),
            "database": await database_state(engine),
        }
        try:
            await asyncio.wait_for(beat(redis, info, timeout), timeout=max(1.0, interval(timeout)))
            failing = False
        except Exception as exc:
            if not failing:
                log.warning("heartbeat_failed", error=f"{type(exc).__name__}: {exc}")
            failing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval(timeout))
    # a worker that stops says so at once, instead of seeming alive until its key expires (best effort)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(redis.delete(KEY_PREFIX + ident), timeout=1)
