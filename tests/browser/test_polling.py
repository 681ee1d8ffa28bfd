"""The source page of a polled source in Chromium: a real `router serve` + `router worker` polling a loopback API."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tests.browser.support import Stack, chromium, new_page, require_browser, router_stack, sign_in
from tests.polling.paged_api import PagedAPI, rules

pytestmark = pytest.mark.browser

SHOTS = Path(os.environ.get("ROUTER_TEST_SHOTS", "")) if os.environ.get("ROUTER_TEST_SHOTS") else None


@pytest.fixture(scope="module")
def api() -> Iterator[PagedAPI]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    paged = PagedAPI.start(server, style="link", page_size=2)
    paged.add(5)
    paged.plan = {1: (503, "1")}  # the first poll fails: the page shows it, and the one that worked after it
    yield paged
    server.clear()
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str, api: PagedAPI) -> Iterator[Stack]:
    require_browser()
    extra = {"shop.yaml": "# yaml-language-server: $schema=./rule.schema.json\n" + rules(api, every="2s")}
    with router_stack(tmp_path_factory.mktemp("browser-polling"), redis_url, extra) as running_stack:
        yield running_stack


def test_the_source_page_shows_each_poll(stack: Stack, api: PagedAPI, tmp_path: Path) -> None:
    deadline = time.monotonic() + 30
    with stack.api() as client:
        while True:
            polls = client.get("/api/sources/shop-orders/polls").json()["polls"]
            if any(p["outcome"] == "ok" and p["new_events"] == 5 for p in polls):
                break
            assert time.monotonic() < deadline, polls
            time.sleep(0.3)
    with chromium() as browser:
        page = new_page(browser, stack)
        sign_in(page)
        page.goto("/")
        assert "polled every 2s" in page.inner_text("[data-testid=source-pull-shop-orders]")
        assert page.locator("[data-testid=source-url-shop-orders]").count() == 0  # no webhook URL
        page.click("[data-testid=source-link-shop-orders]")
        page.wait_for_url("**/sources/shop-orders")
        assert page.inner_text("[data-testid=source-no-webhook]") == "none: this source is polled"
        assert page.inner_text("[data-testid=poll-health]") == "ok"
        rows = page.locator("[data-testid=poll-row]")
        texts = [rows.nth(i).inner_text() for i in range(rows.count())]
        failed = [t for t in texts if "failed" in t]
        assert failed, texts
        assert "answered 503" in failed[-1]
        worked = [t for t in texts if "\tok\t" in t or " ok " in t.replace("\t", " ")]
        assert any("\t3\t5\t5\t" in t for t in worked), texts  # pages, items seen, new events
        page.click("[data-testid=source-events-link]")
        page.wait_for_url("**/events?source=shop-orders")
        assert page.locator("[data-testid=event-row]").count() >= 5
        page.goto("/sources/shop-orders")
        path = (SHOTS or tmp_path) / "source-page.png"
        page.screenshot(path=str(path), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto("/sources/shop-orders")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width} px wide at a 390 px viewport"
        page.screenshot(path=str((SHOTS or tmp_path) / "source-page-390.png"), full_page=True)
    assert stack.csp_violations == [], stack.csp_violations
