"""The poll presets against their providers' documented responses (samples/), served from a loopback server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response

from router.polling.presets import POLL_PRESETS
from tests.polling.test_poller import make_poller

pytestmark = pytest.mark.postgres


def test_every_preset_ships_pages_shaped_as_documented() -> None:
    stripe = [p.body() for p in POLL_PRESETS["stripe-events"].pages]
    assert [p["object"] for p in stripe] == ["list", "list"]
    assert [p["has_more"] for p in stripe] == [True, False]
    created = [e["created"] for page in stripe for e in page["data"]]
    assert created == sorted(created, reverse=True)  # newest first, as Stripe lists
    assert all(e["object"] == "event" and e["id"].startswith("evt_") for page in stripe for e in page["data"])
    github = [p.body() for p in POLL_PRESETS["github-events"].pages]
    assert all(isinstance(page, list) for page in github)
    assert all({"id", "type", "actor", "repo", "payload", "public", "created_at"} <= set(e) for p in github for e in p)
    assert POLL_PRESETS["github-events"].pages[0].headers["etag"].startswith('W/"')
    assert 'rel="next"' in POLL_PRESETS["github-events"].pages[0].headers["link"]
    shopify = [p.body() for p in POLL_PRESETS["shopify-orders"].pages]
    assert all(set(page) == {"orders"} for page in shopify)
    assert 'rel="next"' in POLL_PRESETS["shopify-orders"].pages[0].headers["link"]
    assert 'rel="previous"' in POLL_PRESETS["shopify-orders"].pages[1].headers["link"]


def serve_pages(server: HTTPServer, preset: str, path: str, real_base: str) -> list[Request]:
    """Serve the preset's pages at ``path``: a request naming page 2 (as its Link header does) gets page 2."""
    pages = POLL_PRESETS[preset].pages
    seen: list[Request] = []
    local = server.url_for(path)
    extra: list[dict[str, Any]] = []  # items the test adds on top of page 1

    def handle(request: Request) -> Response:
        seen.append(request)
        second = request.args.get("page") == "2" or request.args.get("page_info", "").startswith("eyJsYXN0")
        sample = pages[1] if second else pages[0]
        body = sample.body()
        if not second and extra:
            body = extra + body
        headers = {k: v.replace(real_base, local) for k, v in sample.headers.items() if k != "content-type"}
        etag = headers.get("etag")
        if etag and not second:
            etag = headers["etag"] = f'W/"{len(extra)}{etag[3:]}'
            if request.headers.get("if-none-match") == etag:
                return Response(status=304, headers={"etag": etag, "x-poll-interval": "60"})
        return Response(json.dumps(body), headers=headers, content_type="application/json")

    server.expect_request(path).respond_with_handler(handle)
    server.extra = extra  # type: ignore[attr-defined]
    return seen


async def test_github_events_pages_by_link_and_an_unchanged_poll_is_a_304(
    api_server: HTTPServer, tmp_path: Path, database_url: str
) -> None:
    seen = serve_pages(
        api_server,
        "github-events",
        "/repositories/1296269/events",
        "https://api.github.com/repositories/1296269/events",
    )
    url = api_server.url_for("/repositories/1296269/events")
    text = f"""
sources:
  - id: octo-activity
    poll:
      preset: github-events
      url: "{url}"
      headers: {{Authorization: "Bearer {{{{ secrets.GITHUB_TOKEN }}}}"}}
      every: 1m
"""
    p = await make_poller(tmp_path, database_url, {"gh.yaml": text}, env={"ROUTER_SECRET_GITHUB_TOKEN": "ghp_test"})
    try:
        first = await p.poll("octo-activity")
        assert (first.pages, first.items, len(first.new)) == (2, 5, 5)
        assert seen[0].headers["authorization"] == "Bearer ghp_test"
        assert seen[0].headers["accept"] == "application/vnd.github+json"
        assert seen[0].args["per_page"] == "100"
        assert seen[1].args["page"] == "2"  # followed the Link header
        rows = await p.events("octo-activity")
        assert [r.body["type"] for r in rows] == [
            "PushEvent",
            "IssueCommentEvent",
            "IssuesEvent",
            "WatchEvent",
            "ForkEvent",
        ]
        second = await p.poll("octo-activity")
        assert second.outcome == "not_modified"
        assert seen[-1].headers["if-none-match"] == 'W/"07a4b1e0f3c2d9e8a6b5c4d3e2f1a0b9c"'
        state = await p.state("octo-activity")
        assert (state.next_poll_at - state.last_poll_at).total_seconds() >= 60  # X-Poll-Interval: 60
        # a new event on top of page 1: the ETag changes; page 1 holds stored events, so page 2 is not fetched
        api_server.extra.insert(0, {**rows[0].body, "id": "44563100001", "created_at": "2026-11-25T10:20:00Z"})  # type: ignore[attr-defined]
        before = len(seen)
        third = await p.poll("octo-activity")
        assert (third.pages, len(third.new)) == (1, 1)
        assert len(seen) == before + 1
    finally:
        await p.http.aclose()
        await p.engine.dispose()


async def test_shopify_orders_page_info_links_and_updated_at_min_cursor(
    api_server: HTTPServer, tmp_path: Path, database_url: str
) -> None:
    real = "https://event-router-demo.myshopify.com/admin/api/2025-01/orders.json"
    seen = serve_pages(api_server, "shopify-orders", "/admin/api/2025-01/orders.json", real)
    url = api_server.url_for("/admin/api/2025-01/orders.json")
    text = f"""
sources:
  - id: shop
    poll:
      preset: shopify-orders
      url: "{url}"
      headers: {{X-Shopify-Access-Token: "{{{{ secrets.SHOPIFY_TOKEN }}}}"}}
      every: 1m
"""
    p = await make_poller(tmp_path, database_url, {"shop.yaml": text}, env={"ROUTER_SECRET_SHOPIFY_TOKEN": "shpat_x"})
    try:
        first = await p.poll("shop")
        assert (first.pages, first.items, len(first.new)) == (2, 4, 4)
        assert seen[0].headers["x-shopify-access-token"] == "shpat_x"
        created = (await p.state("shop")).created_at
        since = datetime.fromtimestamp(created.timestamp(), UTC).isoformat().replace("+00:00", "Z")
        assert dict(seen[0].args) == {"status": "any", "limit": "250", "updated_at_min": since}  # from first seen
        assert set(seen[1].args) == {"limit", "page_info"}  # Shopify refuses other parameters beside page_info
        state = await p.state("shop")
        assert state.cursor == "2026-11-25T10:40:02-05:00"
        await p.poll("shop")
        assert seen[-2].args["updated_at_min"] == "2026-11-25T10:40:02-05:00"
        rows = await p.events("shop")
        assert [r.body["name"] for r in rows] == ["#1042", "#1043", "#1044", "#1045"]
    finally:
        await p.http.aclose()
        await p.engine.dispose()
