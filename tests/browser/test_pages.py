"""The UI in a real browser: Debian's Chromium driven by Playwright against `router serve` + `router worker`.

Every page is also checked for Content-Security-Policy violations and script errors in the console.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.support import (
    DOC_SCREENSHOTS,
    Stack,
    new_page,
    require_browser,
    router_stack,
    screenshot,
    sign_in,
)
from tests.conftest import REPO, free_port

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("no_csp_violations")]

FLAKY_PORT = free_port()  # nothing listens here until the test "heals" the destination
ORDERS = f"""
sources:
  - id: orders
    verify: {{scheme: none}}
    dedupe: false
rules:
  - id: orders-to-warehouse
    source: orders
    description: Every order is posted to the warehouse API.
    steps:
      - id: post-order
        action: http
        with:
          url: http://127.0.0.1:{FLAKY_PORT}/orders
          method: POST
          json: {{order: "{{{{ body.id }}}}"}}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    require_browser()
    with router_stack(tmp_path_factory.mktemp("browser"), redis_url, {"orders.yaml": ORDERS}) as running_stack:
        yield running_stack


class _Ok(http.server.BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:
        _Ok.received.append(self.rfile.read(int(self.headers.get("content-length", "0"))))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok": true}')

    def log_message(self, *args: Any) -> None:
        pass


def wait_status(stack: Stack, event_id: str, statuses: tuple[str, ...], timeout: float = 20) -> dict[str, Any]:
    with stack.api() as api:
        deadline = time.monotonic() + timeout
        while True:
            event: dict[str, Any] = api.get(f"/api/events/{event_id}").json()
            if event["status"] in statuses:
                return event
            assert time.monotonic() < deadline, f"event {event_id} stayed {event['status']}"
            time.sleep(0.1)


def test_sign_in_and_out(stack: Stack, browser: Any) -> None:
    page = new_page(browser, stack)
    page.goto("/events")
    assert "/login" in page.url  # not signed in: sent to the form, with the page to come back to
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    assert "Wrong user name or password" in page.inner_text("[data-testid=login-error]")
    assert page.get_by_label("User name").input_value() == "admin", "a wrong password cleared the user name"
    screenshot(page, "sign-in")
    sign_in(page)
    assert "admin" in page.inner_text("[data-testid=whoami]")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    page.goto("/")
    assert "/login" in page.url


def test_new_events_appear_live_and_a_failed_run_is_retried(stack: Stack, browser: Any) -> None:
    page = new_page(browser, stack)
    sign_in(page)
    page.goto("/events")
    before = page.locator("[data-testid=event-row]").count()
    with stack.api() as api:  # the webhook arrives while the page is open
        event_id = api.post("/hooks/orders", json={"id": "A-1001", "total": 42}).json()["event_id"]
    row = page.locator(f"[data-testid=event-row][data-event-id='{event_id}']")
    row.wait_for()  # no reload: the live poll brought it in
    assert page.locator("[data-testid=event-row]").count() == before + 1
    wait_status(stack, event_id, ("failed",))
    row.locator("[data-testid=event-link]").click()
    page.wait_for_url(f"**/events/{event_id}")
    run = page.locator("[data-testid^=run-][data-status]").first
    assert run.get_attribute("data-status") == "dead"
    assert (
        "refused" in page.inner_text("[data-testid=steps]").lower()
        or "connect" in page.inner_text("[data-testid=steps]").lower()
    )
    screenshot(page, "event-failed")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", FLAKY_PORT), _Ok)  # the destination heals
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
        page.click("[data-testid=retry-button]")
        page.wait_for_selector("[data-testid=action-notice]")
        assert "retried from its failed step" in page.inner_text("[data-testid=action-notice]")
        assert len(dialogs) == 1, dialogs  # one confirmation, not one per layer
        page.locator("[data-testid^=run-][data-status=succeeded]").first.wait_for(timeout=20_000)
        page.locator("[data-testid=step-row] >> text=succeeded").first.wait_for()
    finally:
        server.shutdown()
        server.server_close()
    assert _Ok.received
    assert b"A-1001" in _Ok.received[-1]
    page.locator("[data-testid=runs]").scroll_into_view_if_needed()
    screenshot(page, "event-detail")


def _doc_screenshots() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(DOC_SCREENSHOTS.glob("*.png"))}


def test_screenshots_of_the_main_pages(stack: Stack, browser: Any) -> None:
    committed = _doc_screenshots()
    page = new_page(browser, stack)
    sign_in(page)
    with stack.api() as api:
        for n in range(3):
            api.post("/hooks/orders", json={"id": f"B-{n}", "total": n})
    for name, path, ready in [
        ("overview", "/", "[data-testid=chart-events]"),
        ("events", "/events", "[data-testid=events-table]"),
        ("dead-letters", "/dead-letters", "[data-testid=dead-letters-table]"),
        ("rules", "/rules", "main h1"),
    ]:
        page.goto(path)
        page.wait_for_selector(ready)
        shot = screenshot(page, name)
        assert shot.stat().st_size > 10_000, f"{name}: the screenshot is blank"
    if not os.environ.get("ROUTER_TEST_SCREENSHOTS_DIR"):  # a plain test run leaves the checkout as it was
        assert REPO not in shot.parents, shot
        assert _doc_screenshots() == committed, "the test run rewrote docs/screenshots"
