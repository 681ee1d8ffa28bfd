"""The source page shows each poll (when, pages, items seen, new events, duration, error); the overview links it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from tests.conftest import sign_in
from tests.polling.paged_api import PagedAPI, rules
from tests.polling.test_poller import Clock, make_poller

pytestmark = [pytest.mark.ui, pytest.mark.postgres]


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_the_source_page_lists_each_poll_and_the_overview_links_it(
    api_server: HTTPServer, router_factory: Any, database_url: str, tmp_path: Path
) -> None:
    api = PagedAPI.start(api_server, style="body", page_size=2)
    api.add(5)
    api.plan = {1: (503, None)}
    files = {
        "shop.yaml": rules(api, every="30s"),
        "more.yaml": """
sources:
  - id: hooks
    verify: {scheme: none}
  - id: nightly
    schedule: {cron: "0 2 * * *", timezone: Europe/Berlin}
""",
    }
    async with router_factory(files, database_url=database_url, worker=False) as r:
        await sign_in(r, role="viewer")
        empty = await r.client.get("/sources/shop-orders")
        assert empty.status_code == 200
        assert 'data-testid="no-polls"' in empty.text
        p = await make_poller(tmp_path, database_url, {"shop.yaml": files["shop.yaml"]})
        p.deps.clock = Clock(datetime.now(UTC))
        try:
            failed = await p.poll()
            ok = await p.poll()
        finally:
            await p.http.aclose()
            await p.engine.dispose()
        assert (failed.outcome, ok.outcome, len(ok.new)) == ("failed", "ok", 5)
        html = (await r.client.get("/sources/shop-orders")).text
        rows = re.findall(r'<tr data-testid="poll-row">(.*?)</tr>', html, re.DOTALL)
        assert len(rows) == 2
        newest, oldest = text_of(rows[0]), text_of(rows[1])
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ok 3 5 5 \d+ ms", newest), newest
        assert re.search(
            r"failed 0 0 0 \d+ ms GET http://127\.0\.0\.1:\d+/orders\?updated_since=.* answered 503", oldest
        )
        assert 'data-testid="poll-health">ok<' in html
        assert 'data-testid="source-no-webhook">none: this source is polled<' in html
        assert "every 30s" in html
        assert 'data-testid="poll-cursor">&#34;2026-12-01T10:00:04Z&#34;<' in html or "2026-12-01T10:00:04Z" in html

        listing = (await r.client.get("/events?source=shop-orders")).text
        assert listing.count('data-testid="event-via">poll<') == 5
        event = (await r.client.get(f"/events/{ok.new[0]}")).text
        assert 'data-testid="event-via">polling its API<' in event

        overview = (await r.client.get("/")).text
        assert 'href="/sources/shop-orders" data-testid="source-link-shop-orders"' in overview
        assert 'data-testid="source-url-shop-orders"' not in overview  # a polled source has no webhook URL
        assert 'data-testid="source-url-hooks"' in overview
        assert "fires cron 0 2 * * * (Europe/Berlin)" in text_of(overview)
        nightly = (await r.client.get("/sources/nightly")).text
        assert "none: this source is a schedule" in nightly
        assert 'data-testid="poll-health">' in nightly
        hooks = (await r.client.get("/sources/hooks")).text
        assert "/hooks/hooks</code>" in hooks
        assert 'data-testid="polls"' not in hooks
        missing = await r.client.get("/sources/nope", headers={"accept": "text/html"})
        assert missing.status_code == 404
        assert "no source &#39;nope&#39;" in missing.text or "no source 'nope'" in missing.text


async def test_a_failing_source_is_flagged_on_the_overview_and_its_page(
    api_server: HTTPServer, router_factory: Any, database_url: str, tmp_path: Path
) -> None:
    api = PagedAPI.start(api_server, style="body")
    api.plan = {1: (500, None), 2: (500, None), 3: (500, None)}
    files = {"shop.yaml": rules(api)}
    async with router_factory(files, database_url=database_url, worker=False) as r:
        await sign_in(r, role="viewer")
        p = await make_poller(tmp_path, database_url, files)
        try:
            for _ in range(3):
                assert (await p.poll()).outcome == "failed"
        finally:
            await p.http.aclose()
            await p.engine.dispose()
        overview = (await r.client.get("/")).text
        assert 'data-testid="source-health-shop-orders">polls failing<' in overview
        page = (await r.client.get("/sources/shop-orders")).text
        assert 'data-testid="poll-health">failing<' in page
        assert "3 polls in a row failed" in page
        assert 'data-testid="poll-failures">3<' in page
