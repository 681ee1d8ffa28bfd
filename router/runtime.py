"""What a process shares between its requests or jobs: one typed object each, built at start-up.

- ``AppState``: a web process's database engine and sessions, rules holder, Redis and ingest writer.
  Built by the app's lifespan (router/app.py) and given to handlers as the Litestar dependency
  ``runtime`` (``def handler(runtime: AppState)``).
- ``WorkerState``: a worker process's database, outgoing HTTP client, rules holder and Redis, with the
  ``Deliverer`` that executes runs, the consumer that claims events and the writer of the hot path.
  Built by ``router.worker.create_state``, kept in the arq context as ``ctx["state"]``.

Both are composed: the deliverer is a part of the worker's state, not its base class, and is given the
state's ``enqueue`` (a ``router.pipeline.queue.Enqueue``) rather than having it rebound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from router.pipeline import queue
from router.pipeline.consumer import Consumer
from router.pipeline.delivery import Deliverer
from router.pipeline.outbound import OutboundClient
from router.pipeline.store import EventWriter
from router.records.transactor import Transactor
from router.rules.holder import RulesHolder
from router.rules.reload import RulesWatcher
from router.settings import Settings


class AppState:
    """A web process's shared objects (see the module docstring).

    A plain class rather than a dataclass: Litestar checks a dependency's value with msgspec, which
    would walk a dataclass's fields (down to every compiled rule) on each request; an instance of a
    plain class is handed over as it is.
    """

    __slots__ = ("engine", "redis", "rules", "rules_watcher", "sessions", "settings", "writer")

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        rules: RulesHolder,
        redis: Any,  # ArqRedis: connects lazily, so a Redis outage does not stop the web
        writer: EventWriter,
        rules_watcher: RulesWatcher,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.sessions = sessions
        self.rules = rules
        self.redis = redis
        self.writer = writer
        self.rules_watcher = rules_watcher

    def as_dict(self) -> dict[str, Any]:
        """Each shared object by name (the app's ``state`` holds them so too, for the guard, ingest and /metrics)."""
        return {name: getattr(self, name) for name in self.__slots__}


# How a handler asks for it: `async def handler(runtime: Runtime)`.
Runtime = NamedDependency[AppState]


def provide_runtime(state: State) -> AppState:
    """The Litestar dependency ``runtime``: the web process's ``AppState`` (set by the app's lifespan)."""
    runtime: AppState = state.runtime
    return runtime


@dataclass
class WorkerState:
    """A worker process's shared objects (see the module docstring)."""

    settings: Settings
    engine: AsyncEngine
    http: OutboundClient
    sessions: async_sessionmaker[AsyncSession] | None = None
    rules: RulesHolder = field(default_factory=RulesHolder)
    redis: Any = None  # ArqRedis, set once the pool exists (attach_redis)
    consumer: Consumer | None = None  # claims and delivers received events (router/pipeline/consumer.py)
    writes: Transactor | None = None  # the consumer's claims and the ledger's commits (router/records/transactor.py)
    deliverer: Deliverer = field(init=False)  # executes runs (router/pipeline/delivery.py)

    def __post_init__(self) -> None:
        self.deliverer = Deliverer(settings=self.settings, engine=self.engine, http=self.http, enqueue=self.enqueue)
        self.attach_redis(self.redis)

    def attach_redis(self, redis: Any) -> None:
        """Use ``redis`` for queueing, the workers' doorbell and the destinations' shared state."""
        self.redis = redis
        self.deliverer.redis = redis
        self.deliverer.destinations.redis = redis

    async def enqueue(self, function: str, *args: Any, job_id: str, defer: float | None = None) -> None:
        """``Enqueue`` on this worker's Redis (nothing without one: the reconciler queues it later)."""
        if self.redis is not None:
            await queue.enqueuer(self.redis)(function, *args, job_id=job_id, defer=defer)
