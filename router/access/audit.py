"""The audit log: every change made through the UI, the API or the CLI, with who made it and when."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from router.records.models import AuditEntry, new_id, utcnow
from router.records.serialize import fields


def record(session: AsyncSession, actor: str, action: str, target: str = "", detail: Any = None) -> AuditEntry:
    """Add an entry to ``session``; it commits with the change it describes."""
    entry = AuditEntry(
        id=new_id(), at=utcnow(), actor=actor[:200], action=action[:100], target=target[:300], detail=detail
    )
    session.add(entry)
    return entry


def entry_dict(entry: AuditEntry) -> dict[str, Any]:
    return fields(entry, "id at actor action target detail")


async def list_entries(
    session: AsyncSession,
    *,
    limit: int = 100,
    before: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
) -> list[AuditEntry]:
    """Newest first; ``before`` is an entry id (a page's last), ``actor`` a prefix, ``since`` naive means UTC."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before:
        query = query.where(AuditEntry.id < before)
    if actor:
        query = query.where(AuditEntry.actor.startswith(actor, autoescape=True))
    if action:
        query = query.where(AuditEntry.action == action)
    if since:
        since = since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
        query = query.where(AuditEntry.at >= since)
    return list((await session.scalars(query)).all())


async def actions(session: AsyncSession) -> list[str]:
    """Every action name in the log (for a filter's choices)."""
    return sorted(await session.scalars(select(AuditEntry.action).distinct()))


async def record_on(conn: AsyncConnection, actor: str, action: str, target: str = "", detail: Any = None) -> None:
    """``record`` for code that works on a connection: the entry joins the connection's transaction."""
    async with AsyncSession(bind=conn) as session:
        record(session, actor, action, target, detail)
        await session.flush()
