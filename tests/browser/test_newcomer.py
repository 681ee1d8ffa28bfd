"""What a newcomer sees in Chromium: the API reference offline, the Rejected and Inbox pages, a phone-sized
layout, and no Content-Security-Policy violation on any page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.support import (
    SCREENSHOTS,
    Stack,
    new_page,
    require_browser,
    router_stack,
    screenshot,
    settled,
    sign_in,
)

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("no_csp_violations")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    require_browser()
    with router_stack(tmp_path_factory.mktemp("newcomer"), redis_url) as running_stack:
        yield running_stack


def offline(page: Any, stack: Stack) -> list[str]:
    """Block every request that does not go to the router itself (no internet); returns what was blocked."""
    blocked: list[str] = []

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url.startswith((stack.url + "/", "data:", "blob:")):
            request_route.continue_()
        else:
            blocked.append(url)
            request_route.abort()

    page.context.route("**/*", route)
    return blocked


def test_the_api_reference_renders_offline_under_the_strict_csp(stack: Stack, browser: Any) -> None:
    page = new_page(browser, stack)
    blocked = offline(page, stack)
    response = page.goto("/schema")
    assert response is not None
    assert response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    page.wait_for_selector("h2:has-text('Receive a webhook')", timeout=20_000)
    page.wait_for_selector("h2:has-text('List events, newest first')")
    assert page.locator("#redoc .menu-content").count() == 1
    screenshot(page, "api-reference")
    assert blocked == [], f"the API reference asked the internet for {blocked}"


PAGES = [
    "/",
    "/events",
    "/rules",
    "/rules/new",
    "/dead-letters",
    "/rejections",
    "/inboxes",
    "/inboxes/slack",
    "/settings/users",
    "/settings/secrets",
    "/settings/audit",
    "/schema",
]


def _traffic(stack: Stack) -> str:
    """An accepted event (delivered to the inbox `slack`), a rejected one; returns the accepted event's id."""
    import json
    import subprocess
    import sys
    import time

    sent = subprocess.run(
        [sys.executable, "-m", "router", "send", "github", "samples/github-push.json", "--url", stack.url,
         "-H", "X-GitHub-Event: push"],
        cwd=stack.workdir, env=stack.env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    event_id = str(json.loads(sent.stdout.split(" ", 1)[1])["event_id"])
    with stack.api() as api:
        api.post("/hooks/github", json={"forged": True})  # no signature: 401, recorded
        deadline = time.monotonic() + 20
        while api.get(f"/api/events/{event_id}").json()["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    return event_id


def test_every_page_fits_a_390_px_screen_without_a_csp_violation(stack: Stack, browser: Any) -> None:
    event_id = _traffic(stack)
    page = new_page(browser, stack, viewport=(390, 844))
    offline(page, stack)
    sign_in(page)
    wide = {}
    for path in [*PAGES, f"/events/{event_id}"]:
        page.goto(path)
        page.wait_for_load_state("networkidle")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if overflow > 0:
            wide[path] = overflow
    screenshot(page, "event-390")
    assert wide == {}, f"pages wider than a 390 px screen (by px): {wide}"


def test_the_builder_speaks_plainly_and_keeps_its_csp(stack: Stack, browser: Any) -> None:
    page = new_page(browser, stack)
    sign_in(page)
    page.goto("/rules/new")
    page.get_by_test_id("source-select").select_option("github")
    page.wait_for_selector("[data-testid=source-info]:has-text('/hooks/github')")
    assert "required field is missing" not in page.inner_text("main")
    # A whole-page picture resizes the window, as a person may; the htmx swaps that followed used to "settle"
    # a style attribute onto swapped elements, which the CSP refuses (htmx-config attributesToSettle).
    page.screenshot(path=str(SCREENSHOTS / "builder-full.png"), full_page=True)
    page.get_by_test_id("cond-path").first.click()
    page.locator("[data-path='headers.\"x-github-event\"']").click()
    page.get_by_test_id("cond-value").first.fill("push")
    page.get_by_test_id("cond-add").first.click()
    page.get_by_test_id("cond-path").nth(1).wait_for()
    settled(page)
    page.get_by_test_id("cond-path").nth(1).fill("body.nothere")
    page.get_by_test_id("cond-value").nth(1).fill("x")
    page.get_by_test_id("new-kind").select_option("email")
    page.get_by_test_id("step-add").click()
    page.wait_for_selector("#step-0-f-text")
    settled(page)  # the new step's fields listen only once htmx has settled them
    assert "required field is missing" not in page.inner_text("main"), "red before anything was typed"
    page.fill("#step-0-f-text", "{{ body.nope.deeper }} hi")
    error = page.get_by_test_id("preview-error-text")
    error.wait_for()
    assert error.inner_text().startswith("the sample has no field body.nope")
    assert error.locator("code").first.inner_text() == "body.nope"  # code, not raw backticks
    screenshot(page, "builder-plain-words")
