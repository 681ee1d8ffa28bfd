"""What a worker does beside delivering: heartbeat, its metrics port, alert evaluation and retention.

``start(settings, state)`` is called once the worker's state exists and ``stop`` when it shuts down
(router/worker.py); both are one line there, so the delivery loop knows nothing of these chores.

- the heartbeat (router/ops/heartbeat.py) runs in every worker;
- the metrics port (``ROUTER_METRICS_PORT`` / ``--metrics-port``) is prometheus-client's HTTP server in a
  thread; gauges are read per scrape on the worker's own event loop;
- alerts and retention run in every worker's loop, but each round is done by one worker only: a round
  is claimed with a Redis key (SET NX) named after its time slot, so N workers do not evaluate N times.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from router import metrics
from router.ops import heartbeat
from router.settings import Settings

if TYPE_CHECKING:
    from router.runtime import WorkerState

log = structlog.get_logger("router.ops")

SLOT_PREFIX = "router:ops:"


@dataclass
class Ops:
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    server: Any = None
    port: int | None = None


def worker_gauges(state: WorkerState, loop: asyncio.AbstractEventLoop) -> Callable[[], metrics.Gauges]:
    """Read the gauges on the worker's loop (the scrape runs in prometheus-client's thread)."""

    async def read() -> metrics.Gauges:
        queue = await metrics.queue_figures(state.engine)
        breakers = {
            key: b.state in ("open", "half_open") for key, b in list(state.deliverer.destinations.breakers.items())
        }
        return metrics.Gauges(queue, len(state.rules.current.rules), breakers)

    def gauges() -> metrics.Gauges:
        try:
            return asyncio.run_coroutine_threadsafe(read(), loop).result(timeout=5)
        except Exception as exc:
            log.warning("metrics_gauges_unavailable", error=f"{type(exc).__name__}: {exc}")
            return metrics.Gauges(None, None, {})

    return gauges


def serve_metrics(port: int, host: str, state: WorkerState) -> tuple[Any, int]:
    """prometheus-client's HTTP server on ``host:port`` (0: any free port); returns it and its port."""
    from prometheus_client import start_http_server

    registry = metrics.scrape_registry(worker_gauges(state, asyncio.get_running_loop()))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    bound = int(server.server_address[1])
    log.info("metrics_listening", host=host, port=bound)
    return server, bound


async def claim(redis: Any, name: str, every: float, now: float | None = None) -> bool:
    """True for the one worker that claims this time slot of the chore ``name``."""
    slot = int((now if now is not None else time.time()) // every)
    try:
        return bool(await redis.set(f"{SLOT_PREFIX}{name}:{slot}", b"1", nx=True, ex=max(2, int(every * 3))))
    except Exception as exc:
        log.warning("ops_claim_failed", chore=name, error=f"{type(exc).__name__}: {exc}")
        return False


async def periodic(
    stop: asyncio.Event, redis: Any, name: str, every: float, chore: Callable[[], Awaitable[object]]
) -> None:
    """Run ``chore`` once per slot of ``every`` seconds, in whichever worker claims the slot first."""
    while not stop.is_set():
        if await claim(redis, name, every):
            try:
                await chore()
            except Exception as exc:  # a chore must never take the worker down
                log.error("ops_chore_failed", chore=name, error=f"{type(exc).__name__}: {exc}")
        delay = every - (time.time() % every) + 0.05  # just after the next slot starts
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)


async def start(settings: Settings, state: WorkerState) -> Ops:
    """Start the chores of one worker (``state`` is its router.runtime.WorkerState, with ``redis`` set)."""
    ops = Ops()
    beat = heartbeat.run(state.redis, state.engine, settings.heartbeat_timeout, ops.stop_event)
    ops.tasks.append(asyncio.create_task(beat, name="heartbeat"))
    for name, every, chore in chores(settings, state):
        ops.tasks.append(asyncio.create_task(periodic(ops.stop_event, state.redis, name, every, chore), name=name))
    if settings.metrics_port is not None:
        ops.server, ops.port = serve_metrics(settings.metrics_port, settings.metrics_host, state)
    return ops


def chores(settings: Settings, state: WorkerState) -> list[tuple[str, float, Callable[[], Awaitable[object]]]]:
    """The cluster-wide periodic chores: (name, every seconds, coroutine function)."""
    from router.ops import alerts
    from router.records import retention

    return [
        ("alerts", settings.alert_interval, lambda: alerts.chore(settings, state)),
        ("retention", settings.retention_interval, lambda: retention.prune_chore(settings, state)),
    ]


async def stop(ops: Ops | None) -> None:
    if ops is None:
        return
    ops.stop_event.set()
    if ops.server is not None:
        await asyncio.to_thread(ops.server.shutdown)
        ops.server.server_close()
    if ops.tasks:
        _done, pending = await asyncio.wait(ops.tasks, timeout=5)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2)
