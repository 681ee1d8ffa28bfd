"""Stored rows as JSON-ready dicts (router/records/serialize.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from router.records.serialize import fields, iso


def test_fields_keeps_the_order_asked_and_writes_moments_as_iso_text() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    row = SimpleNamespace(id="e1", at=at, gone=None, body={"a": 1}, count=0)
    shown = fields(row, "count id at gone body")
    assert shown == {"count": 0, "id": "e1", "at": "2026-01-02T03:04:05+00:00", "gone": None, "body": {"a": 1}}
    assert list(shown) == ["count", "id", "at", "gone", "body"]


def test_iso_leaves_none_alone() -> None:
    assert iso(None) is None
    assert iso(datetime(2026, 1, 2)) == "2026-01-02T00:00:00"
