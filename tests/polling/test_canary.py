"""Secrets canary for polling: a poll's secret never shows up anywhere but on the wire to the API.

The API wants the secret in the query, a header and (as some APIs do) echoes it back: in an error
body, in the next page's URL and in a response header. The poll fails once, then pages with
``max_pages: 1`` so the next-page URL holding the secret is kept between polls. Then the logs, every
table (read raw), every Redis key, the polls API, the source page and the events are searched.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

import pytest
import structlog
from pytest_httpserver import HTTPServer
from sqlalchemy import text
from werkzeug import Request, Response

from router.logs import configure
from router.records import db
from router.records.models import Base
from tests.conftest import RouterFactory, eventually, sign_in
from tests.security.test_canary import redis_places

pytestmark = [pytest.mark.security, pytest.mark.ui]

CANARY = "pollcanary" + secrets.token_hex(12)


def leaks(where: str, value: Any, found: list[str]) -> None:
    blob = value if isinstance(value, str) else repr(value)
    if CANARY in blob:
        at = blob.index(CANARY)
        found.append(f"{where}: …{blob[max(0, at - 120) : at + 40]}…")


async def tables(url: str, found: list[str]) -> int:
    engine = db.create_engine(url)
    rows = 0
    try:
        async with engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                for row in (await conn.execute(text(f"SELECT * FROM {table.name}"))).all():
                    rows += 1
                    leaks(f"table {table.name}", tuple(row), found)
    finally:
        await engine.dispose()
    return rows


async def test_a_polls_secret_stays_on_the_wire(
    router_factory: RouterFactory,
    httpserver: HTTPServer,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    asked: list[Request] = []

    def api(request: Request) -> Response:
        asked.append(request)
        assert request.args.get("key") == CANARY
        assert request.headers.get("x-api-key") == CANARY
        if len(asked) == 1:
            return Response(json.dumps({"error": f"bad key {CANARY}"}), 500, mimetype="application/json")
        if request.args.get("page") == "2":
            items = [{"id": "b", "note": "second page"}]
            return Response(json.dumps({"items": items}), 200, mimetype="application/json", headers={"x-echo": CANARY})
        following = f"{request.base_url}?key={CANARY}&page=2"
        return Response(
            json.dumps({"items": [{"id": "a", "note": "first page"}]}),
            200,
            mimetype="application/json",
            headers={"link": f'<{following}>; rel="next"', "x-echo": CANARY},
        )

    httpserver.expect_request("/items").respond_with_handler(api)
    rules = {
        "poll.yaml": f"""
sources:
  - id: feed
    poll:
      url: "{httpserver.url_for("/items")}"
      every: 1s
      headers: {{x-api-key: "{{{{ secrets.POLL_CANARY }}}}"}}
      query: {{key: "{{{{ secrets.POLL_CANARY }}}}"}}
      items: body.items
      id: id
      next: link
      max_pages: 1
"""
    }
    configure("info")
    caplog.set_level(logging.INFO)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the API's own access log is not ours
    logging.getLogger("httpx").setLevel(logging.WARNING)  # httpx logs each URL it calls: the wire
    try:
        async with router_factory(rules, env={"ROUTER_SECRET_POLL_CANARY": CANARY}) as r:
            await sign_in(r)

            async def both_emitted() -> bool:
                body = (await r.client.get("/api/events?source=feed")).json()
                return len(body["events"]) == 2

            await eventually(both_emitted, timeout=30, what="the two items to be emitted")
            found: list[str] = []
            events = (await r.client.get("/api/events?source=feed")).json()["events"]
            reads = ["/api/events?source=feed", "/api/sources/feed/polls", "/health"]
            reads += [f"/api/events/{e['id']}" for e in events]
            for url in reads:
                response = await r.client.get(url)
                assert response.status_code == 200, url
                leaks(f"GET {url}", response.text, found)
            for url in ["/sources/feed", "/", "/events?source=feed", *(f"/events/{e['id']}" for e in events)]:
                response = await r.client.get(url, headers={"accept": "text/html"})
                assert response.status_code == 200, url
                leaks(f"page {url}", response.text, found)
            polls = (await r.client.get("/api/sources/feed/polls")).json()["polls"]
            rows = await tables(r.settings.database_url, found)
            keys = await redis_places(r.settings.redis_url or "", found)
    finally:
        structlog.reset_defaults()
        for name in ("werkzeug", "httpx", "arq.worker"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    out, err = capfd.readouterr()
    for where, captured in (("stdout", out), ("stderr", err), ("log records", caplog.text)):
        leaks(where, captured, found)
    outcomes = [p["outcome"] for p in reversed(polls)]
    assert outcomes[:3] == ["failed", "partial", "ok"], outcomes  # failed, page 1 (resume kept), page 2
    assert "[secret:POLL_CANARY]" in polls[-1]["error"]
    print(
        f"poll secrets canary: sent in query and header, echoed in an error, a Link URL kept between polls and a "
        f"header; searched logs, {rows} rows, {keys} Redis keys, {len(reads)} API reads and 5+ pages: "
        f"{len(found)} leaks"
    )
    assert "poll_done" in out + err + caplog.text
    assert found == []
