"""Stored rows as JSON-ready dicts: what the API, the UI and the command line show of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def iso(value: datetime | None) -> str | None:
    """A moment as ISO 8601 text (None stays None)."""
    return value.isoformat() if value is not None else None


def fields(row: Any, names: str) -> dict[str, Any]:
    """``{name: row.name}`` for each of the space-separated ``names``, in that order; moments as ISO 8601 text."""
    return {name: _shown(getattr(row, name)) for name in names.split()}


def _shown(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
