"""Unhealthy destinations: a circuit breaker per destination, and pausing on ``410 Gone``.

A destination is the scheme, host and port a step calls (``https://hooks.slack.com:443``) or the
SMTP server an email goes through. Each worker keeps a breaker per destination: after enough
passing failures in a window (connection errors, timeouts, 5xx) it *trips*, and steps to that
destination wait (``retrying``, no attempt used) instead of taking worker slots, while healthy
destinations keep their latency. After a cool-down one probe is let through (*half-open*): a
success closes the breaker, a failure opens it again for twice as long (up to 5 minutes).

A ``410 Gone`` answer *pauses* the destination, in the database so every worker sees it: steps to
it are ``held`` until someone resumes it (``POST /api/destinations/resume``), and then continue.
Each worker publishes its breakers to Redis for ``GET /api/destinations``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from router.pipeline import queue
from router.pipeline.limits import Lease, Limiter, LimitSpec
from router.pipeline.queue import Enqueue, JobId
from router.records.models import Destination, utcnow
from router.records.status import RunStatus, StepStatus

log = structlog.get_logger("router.destinations")

WINDOW_SECONDS = 60.0
MIN_CALLS = 10
TRIP_RATIO = 0.5
COOL_DOWN = 30.0
MAX_COOL_DOWN = 300.0
PAUSE_CACHE_SECONDS = 2.0
PUBLISH_PREFIX = "router:destination:"
_PAUSED = select(Destination.key, Destination.reason).where(Destination.paused)


def _describe(spec: LimitSpec) -> str:
    parts = ([f"rate {spec.rate}"] if spec.rate else []) + (
        [f"concurrency {spec.concurrency}"] if spec.concurrency else []
    )
    return ", ".join(parts)


def destination_of(action: str, config: Any, smtp: str, slack_api: str) -> str | None:
    """The destination a rendered step calls, or None (``emit`` calls nothing outside)."""
    if action == "email":
        return f"smtp://{smtp}"
    url = getattr(config, "url", None) or (slack_api if action == "slack" else None)
    return url_destination(url) if url else None


def url_destination(url: str) -> str:
    """The destination of a URL: its scheme, host and port (``https://api.example.com:443``)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


@dataclass
class Breaker:
    """One destination's breaker in this worker."""

    outcomes: deque[tuple[float, bool]] = field(default_factory=deque)  # (when, failed)
    failures: int = 0  # how many of ``outcomes`` failed (kept as they come and go: O(1) per call)
    state: str = "closed"  # closed | open | half_open
    open_until: float = 0.0
    cool_down: float = COOL_DOWN
    probing: bool = False
    trips: int = 0

    def record(self, failed: bool, now: float) -> bool:
        """Count an outcome; return True when this outcome trips (or re-opens) the breaker."""
        if self.state == "half_open":
            self.probing = False
            if failed:
                self.cool_down = min(self.cool_down * 2, MAX_COOL_DOWN)
                return self._open(now)
            self.state, self.cool_down = "closed", COOL_DOWN
            self._clear()
            return False
        self.outcomes.append((now, failed))
        self.failures += failed
        while self.outcomes and self.outcomes[0][0] < now - WINDOW_SECONDS:
            self.failures -= self.outcomes.popleft()[1]
        calls = len(self.outcomes)
        if failed and self.state == "closed" and calls >= MIN_CALLS and self.failures / calls >= TRIP_RATIO:
            return self._open(now)
        return False

    def _clear(self) -> None:
        self.outcomes.clear()
        self.failures = 0

    def _open(self, now: float) -> bool:
        self.state, self.open_until = "open", now + self.cool_down
        self.trips += 1
        self._clear()
        return True

    def allow(self, now: float) -> float | None:
        """None to go ahead, else the seconds to wait before trying again."""
        if self.state == "open":
            if now < self.open_until:
                return self.open_until - now
            self.state = "half_open"
        if self.state == "half_open":
            if self.probing:
                return max(1.0, self.cool_down / 10)
            self.probing = True
        return None

    def as_dict(self, now: float) -> dict[str, Any]:
        failures = self.failures
        return {
            "state": self.state,
            "open_for": max(0.0, round(self.open_until - now, 1)) if self.state == "open" else 0.0,
            "recent_calls": len(self.outcomes),
            "recent_failures": failures,
            "trips": self.trips,
        }


@dataclass
class Hold:
    """A step that must not be sent now: wait ``seconds`` (breaker), or until resumed (``paused``)."""

    reason: str
    seconds: float = 0.0
    paused: bool = False


class Destinations:
    """The breakers of one worker, and the paused destinations (from the database, briefly cached)."""

    def __init__(self, engine: AsyncEngine, redis: Any = None) -> None:
        self.engine = engine
        self.redis = redis
        self.breakers: dict[str, Breaker] = {}
        self._paused: dict[str, str] = {}
        self._paused_read = -PAUSE_CACHE_SECONDS - 1.0
        self._reading = asyncio.Lock()

    @property
    def limiter(self) -> Limiter:
        return Limiter(self.redis)

    async def within_limits(self, key: str, spec: LimitSpec) -> tuple[Hold | None, Lease | None]:
        """Take the destination's rate and concurrency allowance; wait up to a second, else hold the step."""
        if self.redis is None:
            return None, None
        deadline = time.monotonic() + 1.0
        while True:
            wait, lease = await self.limiter.acquire(key, spec)
            if wait == 0:
                return None, lease
            if time.monotonic() + wait > deadline:
                return Hold(
                    f"destination {key} is at its limit ({_describe(spec)}); next try in {wait:.1f} s",
                    seconds=max(wait, 0.5),
                ), None
            await asyncio.sleep(wait)

    async def paused(self, fresh: bool = False) -> dict[str, str]:
        """The paused destinations, read at most every PAUSE_CACHE_SECONDS (``fresh``: now).

        One read at a time: the many steps in flight that find the copy stale wait for the same read
        instead of each opening a connection (a herd of reads every two seconds under load).
        """
        if not fresh and time.monotonic() - self._paused_read <= PAUSE_CACHE_SECONDS:
            return self._paused
        async with self._reading:
            if fresh or time.monotonic() - self._paused_read > PAUSE_CACHE_SECONDS:
                started = time.monotonic()
                async with self.engine.connect() as conn:
                    rows = await conn.execute(_PAUSED)
                    self._paused = {k: r or "" for k, r in rows}
                self._paused_read = started
        return self._paused

    async def check(self, key: str) -> Hold | None:
        paused = await self.paused()
        if key in paused:  # the cache may be older than a resume: confirm before holding
            paused = await self.paused(fresh=True)
        if key in paused:
            return Hold(
                f"destination {key} is paused: {paused[key]}; resume it with POST /api/destinations/resume", paused=True
            )
        wait = self.breakers.setdefault(key, Breaker()).allow(time.monotonic())
        if wait is not None:
            return Hold(f"destination {key} is failing (circuit open); next try in {wait:.0f} s", seconds=wait)
        return None

    async def record(self, key: str, *, failed: bool, status: int | None) -> Hold | None:
        """Count a call's outcome; a 410 pauses the destination and returns the hold for the step."""
        if status == 410:
            reason = f"answered 410 Gone at {utcnow().isoformat(timespec='seconds')}"
            await self.pause(key, reason)
            return Hold(
                f"destination {key} is paused: {reason}; resume it with POST /api/destinations/resume", paused=True
            )
        breaker = self.breakers.setdefault(key, Breaker())
        if breaker.record(failed, time.monotonic()):
            log.warning("circuit_open", destination=key, seconds=round(breaker.cool_down), trips=breaker.trips)
        await self.publish(key)
        return None

    async def pause(self, key: str, reason: str) -> None:
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        async with self.engine.begin() as conn:
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            stmt = insert(Destination).values(key=key, paused=True, reason=reason, paused_at=utcnow())
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["key"], set_={"paused": True, "reason": reason, "paused_at": utcnow()}
                )
            )
        self._paused[key] = reason
        log.warning("destination_paused", destination=key, reason=reason)

    async def publish(self, key: str) -> None:
        """Share this worker's view of a breaker (best effort; Redis only carries it for the API)."""
        if self.redis is None:
            return
        breaker = self.breakers[key]
        if breaker.state == "closed" and not breaker.failures and not breaker.trips:
            return
        try:
            await self.redis.set(PUBLISH_PREFIX + key, json.dumps(breaker.as_dict(time.monotonic())), ex=600)
        except Exception as exc:  # the breaker works without Redis; only the API view is stale
            log.debug("breaker_publish_failed", error=str(exc))


async def resume(engine: AsyncEngine, enqueue: Enqueue, key: str, *, actor: str | None = None) -> dict[str, Any]:
    """Un-pause a destination and send its held steps on their way again.

    With ``actor``, an audit entry ``destination_resume`` is written in the same transaction (when
    there was something to resume).
    """
    from sqlalchemy import update

    from router.access import audit
    from router.records.models import Run, RunStep

    marker = f"destination {key} is paused%"
    async with engine.begin() as conn:
        found = await conn.execute(
            update(Destination)
            .where(Destination.key == key, Destination.paused)
            .values(paused=False, resumed_at=utcnow())
        )
        held = (
            (
                await conn.execute(
                    select(RunStep.run_id).where(RunStep.status == StepStatus.HELD, RunStep.note.like(marker))
                )
            )
            .scalars()
            .all()
        )
        runs = sorted(set(held))
        if runs:
            await conn.execute(
                update(RunStep)
                .where(RunStep.run_id.in_(runs), RunStep.status == StepStatus.HELD)
                .values(status=StepStatus.PENDING, note=None)
            )
            await conn.execute(
                update(Run)
                .where(Run.id.in_(runs), Run.status == RunStatus.HELD)
                .values(status=RunStatus.PENDING, error=None, next_attempt_at=utcnow())
            )
        if actor is not None and (found.rowcount or runs):
            await audit.record_on(conn, actor, "destination_resume", key, {"runs": len(runs)})
    if found.rowcount == 0 and not runs:
        return {"destination": key, "resumed": False, "runs": 0}
    stamp = int(time.time())
    for run_id in runs:
        await queue.enqueue_run(enqueue, run_id, job_id=JobId.run(run_id, "resume", stamp))
    log.info("destination_resumed", destination=key, runs=len(runs))
    return {"destination": key, "resumed": True, "runs": len(runs)}


async def overview(engine: AsyncEngine, redis: Any) -> list[dict[str, Any]]:
    """Paused destinations (database) and tripped or failing breakers (as workers last published them)."""
    out: dict[str, dict[str, Any]] = {}
    async with engine.connect() as conn:
        for row in await conn.execute(select(Destination)):
            out[row.key] = {
                "destination": row.key,
                "paused": row.paused,
                "reason": row.reason,
                "paused_at": row.paused_at.isoformat() if row.paused_at else None,
            }
    try:
        keys = [k async for k in redis.scan_iter(match=PUBLISH_PREFIX + "*", count=500)]
        values = await redis.mget(keys) if keys else []
    except Exception as exc:
        log.debug("breaker_read_failed", error=str(exc))
        keys, values = [], []
    for raw_key, value in zip(keys, values, strict=True):
        if value is None:
            continue
        key = (raw_key.decode() if isinstance(raw_key, bytes) else raw_key)[len(PUBLISH_PREFIX) :]
        entry = out.setdefault(key, {"destination": key, "paused": False, "reason": None, "paused_at": None})
        entry["breaker"] = json.loads(value)
    return sorted(out.values(), key=lambda d: d["destination"])
