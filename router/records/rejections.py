"""Rejected ingest requests: recorded without slowing ingest, bounded so a flood cannot fill the disk.

``RejectionLog.note`` is a plain function (no await) that the refusal path of ``POST /hooks/{source}``
calls; the accepted path never touches this module. A note is

- **recorded** one by one while refusals come no faster than ``ROUTER_REJECTIONS_PER_SECOND`` (a token
  bucket with a burst of ten seconds' worth), with one log line each;
- beyond that rate, **counted**: refusals of the same source and status are folded into one row whose
  ``count`` says how many it stands for (at most ``MAX_FOLDED`` such groups per flush; the rest fold into
  the source ``*``), with one log line per group per flush. Nothing refused goes unrecorded.

A writer task inserts what was noted every ``FLUSH_SECONDS`` in one transaction, then deletes the oldest
rows beyond ``ROUTER_REJECTIONS_KEEP``. At most ``MAX_PENDING`` rows wait in memory; past that, further
refusals are folded too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from litestar import Litestar
from sqlalchemy import ColumnElement, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from router.pipeline.match import redact
from router.records.eventlog import id_floor, shown_headers
from router.records.models import Rejection, new_id, utcnow
from router.rules.compiled import CompiledSource

log = structlog.get_logger("router.rejections")

FLUSH_SECONDS = 0.5
MAX_PENDING = 1000
MAX_FOLDED = 50
PREFIX_BYTES = 256
MAX_HEADERS = 50
HEADER_CHARS = 512


@dataclass
class _Folded:
    """Refusals of one (source, status) beyond the rate, waiting to be written as one row."""

    count: int
    first: dict[str, Any]


@dataclass
class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    rate: float
    burst: float
    tokens: float = 0.0
    at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def _headers(headers: Mapping[str, str], source: CompiledSource | None, secrets: Mapping[str, str]) -> dict[str, Any]:
    """Headers fit to keep: credentials and signatures redacted, a bounded number, each value cut short."""
    kept = dict(list(headers.items())[:MAX_HEADERS])
    return {k: v[:HEADER_CHARS] if isinstance(v, str) else v for k, v in shown_headers(kept, source, secrets).items()}


class RejectionLog:
    """Notes refused ingest requests and writes them in the background (see the module's docstring)."""

    def __init__(self, engine: AsyncEngine, *, keep: int, per_second: float) -> None:
        self.engine = engine
        self.keep = keep
        self.bucket = TokenBucket(per_second, max(1.0, per_second * 10))
        self.pending: list[dict[str, Any]] = []
        self.folded: dict[tuple[str, int], _Folded] = {}
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()

    def note(
        self,
        *,
        source: str,
        status: int,
        title: str,
        reason: str,
        remote_addr: str | None,
        headers: Mapping[str, str],
        body_size: int | None,
        body: bytes = b"",
        known: CompiledSource | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        """Note one refusal; never blocks, never raises for the caller."""
        try:
            secrets = secrets or {}
            row: dict[str, Any] = {
                "id": new_id(),
                "received_at": utcnow(),
                "source": source[:64],
                "status": status,
                "title": title[:100],
                "reason": redact(reason[:1000], secrets),
                "remote_addr": (remote_addr or None) and remote_addr[:64],
                "headers": _headers(headers, known, secrets),
                "body_size": body_size,
                "body_prefix": redact(body[:PREFIX_BYTES].decode("utf-8", errors="replace"), secrets),
                "count": 1,
            }
            self._keep(row, title)
        except Exception as exc:  # a refusal must still be answered
            log.error("rejection_note_failed", error=f"{type(exc).__name__}: {exc}")

    def _keep(self, row: dict[str, Any], title: str) -> None:
        """Keep the row to write, or beyond the rate fold it into its (source, status) group."""
        if len(self.pending) < MAX_PENDING and self.bucket.take():
            self.pending.append(row)
            log.warning(
                "ingest_rejected",
                source=row["source"],
                status=row["status"],
                reason=f"{title}: {row['reason']}" if row["reason"] else title,
                remote_addr=row["remote_addr"],
                body_size=row["body_size"],
            )
        else:
            key = (row["source"], row["status"])
            if key not in self.folded and len(self.folded) >= MAX_FOLDED:
                key = ("*", row["status"])
                row["source"] = "*"
            group = self.folded.get(key)
            if group is None:
                self.folded[key] = _Folded(1, row)
            else:
                group.count += 1
        self.wake.set()

    # -- the writer -----------------------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="rejection-writer")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            await self.flush()
            await asyncio.sleep(FLUSH_SECONDS)

    def _take(self) -> list[dict[str, Any]]:
        rows, self.pending = self.pending, []
        folded, self.folded = self.folded, {}
        for (source, status), group in folded.items():
            row = group.first | {"count": group.count}
            row["reason"] = (
                f"{group.count} refusal(s) like this one came faster than ROUTER_REJECTIONS_PER_SECOND and are "
                f"counted here, not listed one by one. This one: {row['title']}: {row['reason']}"
            )[:1000]
            rows.append(row)
            log.warning("ingest_rejected_many", source=source, status=status, count=group.count)
        return rows

    async def flush(self) -> int:
        """Write what was noted; then keep only the newest ``keep`` rows. Returns how many rows were written."""
        rows = self._take()
        if not rows:
            return 0
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(Rejection), rows)
                cutoff = await conn.scalar(
                    select(Rejection.id).order_by(Rejection.id.desc()).offset(self.keep).limit(1)
                )
                if cutoff is not None:
                    await conn.execute(delete(Rejection).where(Rejection.id <= cutoff))
        except Exception as exc:  # the database is down: the log lines above are the record
            log.error("rejections_not_stored", rows=len(rows), refusals=sum(r["count"] for r in rows), error=str(exc))
            return 0
        return len(rows)


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    """Run the rejection log for the app's lifetime (after the main lifespan set up its engine and settings)."""
    settings = app.state.settings
    rejections = RejectionLog(
        app.state.engine, keep=settings.rejections_keep, per_second=settings.rejections_per_second
    )
    rejections.start()
    app.state.rejections = rejections
    try:
        yield
    finally:
        await rejections.stop()


# -- reading ---------------------------------------------------------------------------------------------


def as_dict(r: Rejection) -> dict[str, Any]:
    return {
        "id": r.id,
        "source": r.source,
        "received_at": r.received_at.isoformat(),
        "status": r.status,
        "title": r.title,
        "reason": r.reason,
        "remote_addr": r.remote_addr,
        "headers": r.headers,
        "body_size": r.body_size,
        "body_prefix": r.body_prefix,
        "count": r.count,
    }


@dataclass(frozen=True)
class RejectionFilter:
    source: str | None = None
    status: int | None = None
    since: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        if self.source:
            conds.append(Rejection.source == self.source)
        if self.status is not None:
            conds.append(Rejection.status == self.status)
        if self.since is not None:
            conds += [Rejection.id >= id_floor(self.since), Rejection.received_at >= self.since]
        return conds


async def list_rejections(
    session: AsyncSession, f: RejectionFilter, *, before: str | None = None, limit: int = 100
) -> tuple[list[Rejection], str | None]:
    """Rejections matching ``f``, newest first, older than ``before``; and the cursor of the next page."""
    conds = f.conditions()
    if before:
        conds.append(Rejection.id < before)
    rows = list(
        (await session.scalars(select(Rejection).where(*conds).order_by(Rejection.id.desc()).limit(limit + 1))).all()
    )
    page = rows[:limit]
    return page, (page[-1].id if len(rows) > limit and page else None)


async def count_since(session: AsyncSession, since: datetime) -> dict[str, int]:
    """Refusals per source since ``since`` (each row counts for its ``count``)."""
    from sqlalchemy import func

    rows = await session.execute(
        select(Rejection.source, func.sum(Rejection.count))
        .where(Rejection.id >= id_floor(since), Rejection.received_at >= since)
        .group_by(Rejection.source)
    )
    return {source: int(total or 0) for source, total in rows}
