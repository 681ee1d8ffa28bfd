"""Ingest: the order of checks, body formats, durable capture before 202, and the sweep for lost enqueues."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update

from router.app import create_app
from router.records import db
from router.records.models import Event
from router.settings import load_settings
from router.worker import build_worker
from tests.conftest import RouterFactory, admin_token_for, free_port, live_server, write_rules
from tests.helpers import hmac_hex

RULES = {
    "s.yaml": """
    sources:
      - id: open
        dedupe: false
      - id: sink
      - id: signed
        verify: {scheme: hmac, secret: topsecret, header: x-signature}
    rules:
      - id: all-open
        source: open
        steps:
          - {id: out, action: emit, with: {source: sink, body: "{{ body }}"}}
      - id: nothing
        source: signed
        filter: "`false`"
        steps:
          - {id: out, action: emit, with: {source: sink, body: {}}}
    """
}


def signed(body: bytes) -> dict[str, str]:
    return {"x-signature": hmac_hex("topsecret", body)}


async def test_unknown_source_is_404_problem(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        response = await r.hook("nope", {"a": 1})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Unknown source",
        "status": 404,
        "detail": "no source 'nope' is defined in the rule files",
    }


async def test_size_is_checked_before_signature_and_signature_before_parsing(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False, max_body_bytes=100) as r:
        big = b'{"x": "' + b"a" * 200 + b'"}'
        too_big = await r.hook("signed", content=big, headers={"content-type": "application/json", "x-signature": "0"})
        bad_sig = await r.hook(
            "signed", content=b"{not json", headers={"content-type": "application/json", "x-signature": "00"}
        )
        bad_json = await r.hook(
            "signed", content=b"{not json", headers={"content-type": "application/json", **signed(b"{not json")}
        )
        good = await r.hook(
            "signed", content=b'{"ok": true}', headers={"content-type": "application/json", **signed(b'{"ok": true}')}
        )
    assert too_big.status_code == 413
    assert "limit of 100 bytes" in too_big.json()["detail"] or "limit is 100" in too_big.json()["detail"]
    assert bad_sig.status_code == 401
    assert bad_json.status_code == 400
    assert bad_json.json()["title"] == "Body is not valid JSON"
    assert good.status_code == 202


def test_chunked_body_over_the_limit_is_413(tmp_path: Path, redis_url: str, sqlite_url: str) -> None:
    def chunks() -> Iterator[bytes]:  # no content-length: the server must count as it reads
        for _ in range(50):
            yield b"x" * 100

    settings = load_settings(
        database_url=sqlite_url,
        redis_url=redis_url,
        max_body_bytes=1000,
        rules_dir=write_rules(tmp_path / "rules", RULES),
    )
    with live_server(create_app(settings)) as url:
        response = httpx.post(f"{url}/hooks/open", content=chunks(), headers={"content-type": "text/plain"})
        small = httpx.post(f"{url}/hooks/open", content=iter([b"ok"] * 3), headers={"content-type": "text/plain"})
        token = admin_token_for(sqlite_url)
        listing = httpx.get(f"{url}/api/events", headers={"authorization": f"Bearer {token}"}).json()
    assert response.status_code == 413
    assert response.json()["detail"] == "the body is over the limit of 1000 bytes (ROUTER_MAX_BODY_BYTES)"
    assert small.status_code == 202
    assert [e["id"] for e in listing["events"]] == [small.json()["event_id"]]


async def test_form_text_and_json_bodies(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        form = await r.hook(
            "open",
            content=b"name=Ada&tag=a&tag=b&empty=",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        text = await r.hook("open", content="héllo".encode(), headers={"content-type": "text/plain"})
        bad_text = await r.hook("open", content=b"\xff\xfe", headers={"content-type": "text/plain"})
        typed = await r.hook(
            "open", content=b'{"n": 1.5, "ok": true}', headers={"content-type": "application/vnd.api+json"}
        )
        query = await r.client.post("/hooks/open?x=1&x=2&y=3", content=b"", headers={"X-Custom": "v"})
        form_event = await r.event(form.json()["event_id"])
        text_event = await r.event(text.json()["event_id"])
        typed_event = await r.event(typed.json()["event_id"])
        query_event = await r.event(query.json()["event_id"])
    assert form_event["body"] == {"name": "Ada", "tag": ["a", "b"], "empty": ""}
    assert text_event["body"] == "héllo"
    assert bad_text.status_code == 400
    assert bad_text.json()["title"] == "Body is not valid UTF-8"
    assert typed_event["body"] == {"n": 1.5, "ok": True}
    assert query_event["query"] == {"x": ["1", "2"], "y": "3"}
    assert query_event["headers"]["x-custom"] == "v"
    assert query_event["body"] is None


async def test_event_is_committed_before_the_202(router_factory: RouterFactory, database_url: str) -> None:
    async with router_factory(RULES, worker=False, database_url=database_url) as r:
        ids = [(await r.hook("open", {"i": i})).json()["event_id"] for i in range(20)]
        engine = db.create_engine(database_url)  # a separate connection sees every accepted row at once
        async with engine.connect() as conn:
            stored = set((await conn.execute(select(Event.id))).scalars())
        await engine.dispose()
    assert stored == set(ids)


async def test_event_stored_while_redis_is_down_is_swept_and_delivered(
    router_factory: RouterFactory, redis_clean: str
) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    async with router_factory(RULES, worker=False, redis_url=dead_redis) as r:
        accepted = await r.hook("open", {"order": 7})
        assert accepted.status_code == 202
        event_id = accepted.json()["event_id"]
        settings = r.settings
        health = await r.client.get("/health")
        assert health.status_code == 503
        assert health.json()["failing"] == ["redis"]
        assert (await r.event(event_id))["status"] == "received"
        # Redis is back: a worker's sweep finds the stored event and routes it.
        live = settings.model_copy(update={"redis_url": redis_clean, "sweep_interval": 1.0})
        worker = build_worker(live, burst=True, handle_signals=False)
        engine = db.create_engine(settings.database_url)
        async with engine.begin() as conn:  # make it old enough for the sweep
            await conn.execute(update(Event).values(received_at=datetime.now(UTC) - timedelta(minutes=1)))
        await engine.dispose()
        await worker.async_run()
        await worker.close()
        routed = await r.event(event_id)
    assert routed["status"] in ("routed", "succeeded", "failed")
    assert [run["rule_id"] for run in routed["runs"]] == ["all-open"]


async def test_health_is_ok_only_with_database_redis_and_rules(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        ok = await r.client.get("/health")
    assert ok.status_code == 200
    body: dict[str, Any] = ok.json()
    assert body["status"] == "ok"
    assert body["checks"]["rules"]["rules"] == 2
    broken = {"s.yaml": "rules:\n  - id: x\n    source: ghost\n    steps: [{id: a, action: emit, with: {}}]\n"}
    async with router_factory(broken, worker=False) as r:
        bad = await r.client.get("/health")
    assert bad.status_code == 503
    assert bad.json()["failing"] == ["rules"]
    assert any(
        "s.yaml:3:13: rules[0].source: unknown source 'ghost'" in e for e in bad.json()["checks"]["rules"]["errors"]
    )


async def test_event_list_filters_and_pages(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        ids = [(await r.hook("open", {"i": i})).json()["event_id"] for i in range(5)]
        await r.hook("signed", content=b"{}", headers={"content-type": "application/json", **signed(b"{}")})
        page1 = (await r.client.get("/api/events", params={"source": "open", "limit": 3})).json()
        page2 = (
            await r.client.get("/api/events", params={"source": "open", "limit": 3, "before": page1["next"]})
        ).json()
        missing = await r.client.get("/api/events/01NOPE")
    assert [e["id"] for e in page1["events"]] == ids[::-1][:3]
    assert [e["id"] for e in page2["events"]] == ids[::-1][3:]
    assert page2["next"] is None
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_inbox_catches_any_request(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        await r.client.post(
            "/inbox/demo?x=1", content=json.dumps({"text": "hi"}), headers={"content-type": "application/json"}
        )
        await r.client.put("/inbox/demo", content=b"plain")
        items = await r.inbox("demo")
        other = await r.inbox("other")
    assert [i["method"] for i in items] == ["PUT", "POST"]
    assert items[1]["body"] == {"text": "hi"}
    assert items[1]["query"] == {"x": "1"}
    assert items[0]["body_text"] == "plain"
    assert other == []


async def test_token_is_checked_then_masked_and_times_are_utc(router_factory: RouterFactory) -> None:
    files = {"t.yaml": "sources:\n  - id: form\n    verify: {scheme: token, secret: form-secret-1, header: x-token}\n"}
    async with router_factory(files, worker=False) as r:
        wrong = await r.hook("form", {"a": 1}, headers={"x-token": "nope"})
        by_header = await r.hook("form", {"a": 1}, headers={"x-token": "form-secret-1"})
        by_query = await r.client.post("/hooks/form?token=form-secret-1&keep=1", json={"a": 2})
        stored = [await r.event(x.json()["event_id"]) for x in (by_header, by_query)]
        listing = (await r.client.get("/api/events")).json()
    assert wrong.status_code == 401
    assert stored[0]["headers"]["x-token"] == "[redacted]"
    assert stored[1]["query"] == {"token": "[redacted]", "keep": "1"}
    assert "form-secret-1" not in json.dumps(stored) + json.dumps(listing)
    assert datetime.fromisoformat(stored[0]["received_at"]).utcoffset() == timedelta(0)
