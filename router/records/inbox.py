"""Reading the built-in inbox (``/inbox/{name}`` catches requests): which inboxes exist, and their requests.

Plain functions over an ``AsyncSession``, for the JSON API and the Inbox pages alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from router.records.models import InboxRequest
from router.records.serialize import fields


@dataclass(frozen=True)
class InboxSummary:
    name: str
    count: int
    last_id: str
    last_at: datetime | None


async def inboxes(session: AsyncSession, limit: int = 200) -> list[InboxSummary]:
    """Every inbox that caught something, the most recently used first."""
    rows = await session.execute(
        select(InboxRequest.name, func.count(), func.max(InboxRequest.id))
        .group_by(InboxRequest.name)
        .order_by(func.max(InboxRequest.id).desc())
        .limit(limit)
    )
    found = rows.all()
    last = {
        r.id: r.received_at
        for r in (
            await session.execute(
                select(InboxRequest.id, InboxRequest.received_at).where(InboxRequest.id.in_([f[2] for f in found]))
            )
        ).all()
    }
    return [InboxSummary(name, count, last_id, last.get(last_id)) for name, count, last_id in found]


async def requests(
    session: AsyncSession, name: str, *, after: str | None = None, limit: int = 50
) -> list[InboxRequest]:
    """What an inbox caught, newest first; with ``after``, only requests newer than that id."""
    query = select(InboxRequest).where(InboxRequest.name == name)
    if after:
        query = query.where(InboxRequest.id > after)
    return list((await session.scalars(query.order_by(InboxRequest.id.desc()).limit(limit))).all())


def request_dict(r: InboxRequest) -> dict[str, Any]:
    return fields(r, "id received_at method path headers query body body_text")


def is_page_view(headers: Any) -> bool:
    """A browser opening the URL (a navigation), not a client sending to it: shown, not caught."""
    if headers.get("sec-fetch-mode") == "navigate" or headers.get("sec-fetch-dest") == "document":
        return True
    accept = headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept
