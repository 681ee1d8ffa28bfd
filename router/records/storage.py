"""What the database holds: its size and the oldest event kept (for ``/health`` and the UI's overview)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from router.records.models import Event


async def storage_figures(engine: AsyncEngine) -> dict[str, Any]:
    """The database's size in bytes and the oldest event kept (for /health and the UI)."""
    out: dict[str, Any] = {"database_bytes": None, "oldest_event_at": None, "oldest_event_id": None}
    try:
        async with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                out["database_bytes"] = await conn.scalar(text("SELECT pg_database_size(current_database())"))
            else:
                pages = await conn.scalar(text("PRAGMA page_count"))
                size = await conn.scalar(text("PRAGMA page_size"))
                out["database_bytes"] = int(pages or 0) * int(size or 0)
            oldest = (await conn.execute(select(Event.id, Event.received_at).order_by(Event.id).limit(1))).first()
    except Exception as exc:
        return out | {"error": f"{type(exc).__name__}: {exc}"}
    if oldest is not None:
        received = oldest.received_at
        out["oldest_event_id"] = oldest.id
        out["oldest_event_at"] = received.isoformat() if isinstance(received, datetime) else str(received)
    if out["database_bytes"] is not None:
        out["database_bytes"] = int(out["database_bytes"])
    return out
