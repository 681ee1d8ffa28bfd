"""The database side of polling: one state row per source, the lease, and the commit.

The lease is a conditional UPDATE of the source's row (``lease_until`` in the past or empty), so it
works the same on SQLite and PostgreSQL, with no clock but the database rows'. A worker that dies
holding it leaves it to expire (``ROUTER_POLL_LEASE`` seconds after its last renewal); the next tick
then hands the source to another worker. The commit stores the events, the cursor and the poll's
record in one transaction, and only if the lease is still this poll's: a poll that lost its lease
(frozen past its expiry) commits nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from router.faults import crash_point
from router.pipeline.store import Stored, insert_events
from router.polling.compile import Pull
from router.records.models import Event, PollRun, PollState

KEEP_RUNS = 500  # poll records kept per source
_CHUNK = 500


class LeaseLost(Exception):
    """The lease ran out and another worker took the source over: this poll's results are dropped."""


@dataclass(frozen=True)
class Lease:
    source: str
    token: str
    holder: str


def first_due(pull: Pull, now: datetime, last_tick: datetime | None = None) -> datetime:
    """When a source seen for the first time (or whose block changed) runs: a poll now; a schedule at its next
    tick; a reconciliation one interval on (webhooks come first; it catches what they missed since)."""
    if pull.kind == "schedule":
        return pull.timing.next_after(last_tick or now)
    if pull.kind == "reconcile":
        return pull.timing.next_after(now)
    return now


def _free(now: datetime) -> Any:
    return or_(PollState.lease_until.is_(None), PollState.lease_until < now)


async def sync_states(engine: AsyncEngine, pulls: dict[str, Pull], now: datetime) -> None:
    """A state row per pulled source; a changed block is due afresh and its unfinished pass is dropped."""
    if not pulls:
        return
    async with engine.connect() as conn:
        rows = {
            r.source: r
            for r in await conn.execute(
                select(PollState.source, PollState.kind, PollState.spec_hash, PollState.last_tick_at).where(
                    PollState.source.in_(list(pulls))
                )
            )
        }
    missing = [s for s in pulls if s not in rows]
    changed = [s for s, r in rows.items() if r.spec_hash != pulls[s].spec_hash or r.kind != pulls[s].kind]
    if not missing and not changed:
        return
    async with engine.begin() as conn:
        if missing:
            ins = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            values = [
                {
                    "source": s,
                    "kind": pulls[s].kind,
                    "spec_hash": pulls[s].spec_hash,
                    "created_at": now,
                    "next_poll_at": first_due(pulls[s], now),
                    "last_tick_at": now if pulls[s].kind == "schedule" else None,
                    "failures": 0,
                    "leases": 0,
                }
                for s in missing
            ]
            await conn.execute(ins(PollState).on_conflict_do_nothing(index_elements=["source"]), values)
        for s in changed:
            pull, last_tick = pulls[s], rows[s].last_tick_at
            await conn.execute(
                update(PollState)
                .where(PollState.source == s)
                .values(
                    kind=pull.kind,
                    spec_hash=pull.spec_hash,
                    next_poll_at=first_due(pull, now, last_tick),
                    last_tick_at=(last_tick or now) if pull.kind == "schedule" else None,
                    resume=None,
                    pass_cursor=None,
                    etag=None,
                    etag_key=None,
                    failures=0,
                )
            )


async def due_sources(engine: AsyncEngine, ids: Iterable[str], now: datetime) -> list[Any]:
    """(source, leases, next_poll_at) of the sources due now whose lease is free."""
    async with engine.connect() as conn:
        result = await conn.execute(
            select(PollState.source, PollState.leases, PollState.next_poll_at).where(
                PollState.source.in_(list(ids)), PollState.next_poll_at <= now, _free(now)
            )
        )
        return list(result.all())


async def take_lease(
    engine: AsyncEngine, source: str, holder: str, now: datetime, seconds: float, *, force: bool = False
) -> Lease | None:
    """Take the source's lease if it is free (and the source is due, unless ``force``); None when it is not."""
    token = uuid.uuid4().hex
    conds = [PollState.source == source, _free(now)]
    if not force:
        conds.append(PollState.next_poll_at <= now)
    async with engine.begin() as conn:
        result = await conn.execute(
            update(PollState)
            .where(*conds)
            .values(
                lease_token=token,
                lease_holder=holder[:200],
                lease_until=now + timedelta(seconds=seconds),
                leases=PollState.leases + 1,
            )
        )
    return Lease(source, token, holder) if result.rowcount == 1 else None


async def renew_lease(engine: AsyncEngine, lease: Lease, until: datetime) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(
            update(PollState)
            .where(PollState.source == lease.source, PollState.lease_token == lease.token)
            .values(lease_until=until)
        )
    return result.rowcount == 1


async def release_lease(engine: AsyncEngine, lease: Lease) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(PollState)
            .where(PollState.source == lease.source, PollState.lease_token == lease.token)
            .values(lease_token=None, lease_until=None, lease_holder=None)
        )


async def read_state(engine: AsyncEngine, source: str) -> PollState | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(PollState).where(PollState.source == source))).one_or_none()
    return PollState(**row._mapping) if row is not None else None


async def stored_keys(engine: AsyncEngine, source: str, keys: Sequence[str]) -> set[str]:
    """Which of these dedupe keys the source already has an event for (webhook or poll)."""
    found: set[str] = set()
    async with engine.connect() as conn:
        for i in range(0, len(keys), _CHUNK):
            chunk = list(keys[i : i + _CHUNK])
            result = await conn.scalars(
                select(Event.dedupe_key).where(Event.source == source, Event.dedupe_key.in_(chunk))
            )
            found.update(k for k in result.all() if k is not None)
    return found


async def commit(
    engine: AsyncEngine, lease: Lease, state: dict[str, Any], rows: list[dict[str, Any]], run: dict[str, Any]
) -> list[Stored]:
    """Store the events, the new state and the poll's record in one transaction, if the lease is still ours.

    Raises LeaseLost (and stores nothing) when another worker has taken the source over.
    """
    crash_point("poll_fetched")  # test-only (router/faults.py): pages fetched, nothing committed
    async with engine.begin() as conn:
        result = await conn.execute(
            update(PollState)
            .where(PollState.source == lease.source, PollState.lease_token == lease.token)
            .values(**state, lease_token=None, lease_until=None, lease_holder=None)
        )
        if result.rowcount != 1:
            raise LeaseLost(f"the lease on source {lease.source!r} was taken over; this poll's results are dropped")
        stored = await insert_events(conn, rows) if rows else []
        await conn.execute(insert(PollRun), [run | {"new_events": sum(not dup for _, dup in stored)}])
        cutoff = await conn.scalar(
            select(PollRun.id)
            .where(PollRun.source == lease.source)
            .order_by(PollRun.id.desc())
            .offset(KEEP_RUNS)
            .limit(1)
        )
        if cutoff is not None:
            await conn.execute(delete(PollRun).where(PollRun.source == lease.source, PollRun.id <= cutoff))
    crash_point("poll_committed")  # test-only: committed, routing not yet queued (the sweep routes them)
    return stored
