"""What a newcomer sees in Chromium: the API reference offline, the Rejected and Inbox pages, a phone-sized
layout, and no Content-Security-Policy violation on any page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser_support import Stack, chromium, new_page, require_browser, router_stack, screenshot

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    require_browser()
    with router_stack(tmp_path_factory.mktemp("newcomer"), redis_url) as running_stack:
        yield running_stack


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    with chromium() as running_browser:
        yield running_browser


@pytest.fixture(autouse=True)
def no_csp_violations(stack: Stack) -> Iterator[None]:
    stack.csp_violations.clear()
    yield
    assert stack.csp_violations == [], "the page broke its Content-Security-Policy or threw:\n" + "\n".join(
        stack.csp_violations
    )


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
