"""Ingest answers alike from its ASGI fast path (what serves requests) and from its Litestar handler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from router.api.hooks import receive
from tests.conftest import RouterFactory
from tests.helpers import github_headers

SECRET = "ingest-paths-secret"
RULES = {
    "r.yaml": json.dumps(
        {
            "sources": [
                {"id": "open", "verify": {"scheme": "none"}},
                {"id": "gh", "verify": {"scheme": "github", "secret": SECRET}},
            ],
            "rules": [
                {"id": "r", "source": "open", "steps": [{"id": "e", "action": "emit", "with": {"source": "gh"}}]}
            ],
        }
    )
}


def signed(body: bytes, delivery: str, secret: str = SECRET) -> dict[str, str]:
    return github_headers(body, secret, delivery=delivery)


CASES: list[tuple[str, str, bytes, dict[str, str]]] = [
    ("accepted", "open", b'{"n": 1}', {"content-type": "application/json"}),
    ("with a query", "open", b'{"n": 2}', {"content-type": "application/json"}),
    ("form body", "open", b"a=1&a=2&b=", {"content-type": "application/x-www-form-urlencoded"}),
    ("unknown source", "nowhere", b"{}", {"content-type": "application/json"}),
    ("compressed", "open", b"{}", {"content-type": "application/json", "content-encoding": "gzip"}),
    ("too large", "open", b"x" * 2048, {"content-type": "text/plain"}),
    ("bad JSON", "open", b'{"n": ', {"content-type": "application/json"}),
    ("bad UTF-8", "open", b'{"n": "\xff"}', {"content-type": "application/json"}),
    ("signed", "gh", b'{"ref": "x"}', signed(b'{"ref": "x"}', "d-1")),
    ("signed again (duplicate)", "gh", b'{"ref": "x"}', signed(b'{"ref": "x"}', "d-1")),
    ("wrong signature", "gh", b'{"ref": "y"}', signed(b'{"ref": "y"}', "d-2", "wrong")),
]


def normal(status: int, body: bytes, headers: Any) -> tuple[int, Any, str, str]:
    data = json.loads(body)
    if isinstance(data, dict) and "event_id" in data:
        data["event_id"] = "<id>"
    return status, data, headers.get("content-type", ""), headers.get("connection", "")


async def answers_of(r: Any) -> tuple[list[Any], list[Any]]:
    """Each case's answer, and what the stored events of source ``open`` hold (query and body)."""
    out = []
    for name, source, body, headers in CASES:
        query = "?tag=a&tag=b" if name == "with a query" else ""
        response = await r.client.post(f"/hooks/{source}{query}", content=body, headers=headers)
        out.append(normal(response.status_code, response.content, response.headers))
    listed = (await r.client.get("/api/events", params={"source": "open"})).json()["events"]
    stored = [await r.event(e["id"]) for e in listed]
    return out, sorted((json.dumps(e["query"]), json.dumps(e["body"])) for e in stored)


async def test_fast_path_and_handler_answer_alike(
    router_factory: RouterFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async with router_factory(RULES, worker=False, max_body_bytes=1024) as r:
        fast, fast_events = await answers_of(r)
    assert receive.middleware, "the route is served by its ASGI middleware"
    monkeypatch.setattr(receive, "middleware", [])  # the same route, served by the Litestar handler
    second = f"sqlite+aiosqlite:///{tmp_path / 'second.db'}"
    async with router_factory(RULES, worker=False, max_body_bytes=1024, database_url=second) as r:
        handled, handled_events = await answers_of(r)
    for (name, *_), one, other in zip(CASES, fast, handled, strict=True):
        assert one == other, name
    assert [a[0] for a in fast] == [202, 202, 202, 404, 415, 413, 400, 400, 202, 200, 401]
    assert fast_events == handled_events
    assert fast_events == sorted(
        [("{}", '{"a": ["1", "2"], "b": ""}'), ("{}", '{"n": 1}'), ('{"tag": ["a", "b"]}', '{"n": 2}')]
    )
