"""Browser tests' support: a real `router serve` + `router worker` and Debian's Chromium driven by Playwright.

Playwright cannot download its own browser here, so it launches ``ROUTER_TEST_CHROMIUM`` (default
/usr/bin/chromium). Without it the browser tests are skipped, unless ROUTER_TEST_REQUIRE_BROWSER=1 (CI)
makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, admin_token_for, free_port
from tests.ops.test_processes import base_env, running

CHROMIUM = os.environ.get("ROUTER_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
DOC_SCREENSHOTS = REPO / "docs" / "screenshots"
# Tests write their screenshots to a temporary folder, so a test run leaves the checkout clean. Refresh the
# committed ones explicitly: ROUTER_TEST_SCREENSHOTS_DIR=docs/screenshots python -m pytest tests/browser/test_pages.py
SCREENSHOTS = Path(os.environ.get("ROUTER_TEST_SCREENSHOTS_DIR") or tempfile.mkdtemp(prefix="router-screenshots-"))
PASSWORD = "browser-password-1"


def require_browser() -> None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        if os.environ.get("ROUTER_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail("playwright is not installed (pip install -e '.[test]')")
        pytest.skip("playwright is not installed")
    if not Path(CHROMIUM).exists():
        if os.environ.get("ROUTER_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"no Chromium at {CHROMIUM}")


@dataclass
class Stack:
    url: str
    database_url: str
    workdir: Path
    token: str
    env: dict[str, str]
    csp_violations: list[str] = field(default_factory=list)

    def api(self) -> Any:
        import httpx

        return httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {self.token}"}, timeout=10)


def create_user(database_url: str, username: str, role: str) -> None:
    import asyncio
    import concurrent.futures

    from router.access.auth import create_user as make
    from router.records import db

    async def run() -> None:
        engine = db.create_engine(database_url)
        try:
            await db.migrate(engine)
            async with db.sessionmaker(engine)() as session:
                await make(session, username, PASSWORD, role)
                await session.commit()
        finally:
            await engine.dispose()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@contextmanager
def router_stack(
    workdir: Path, redis_url: str, extra_rules: dict[str, str] | None = None, **extra_env: str
) -> Iterator[Stack]:
    """The example rules and samples (plus ``extra_rules``), served by `router serve` and one `router worker`."""
    shutil.copytree(REPO / "rules", workdir / "rules")
    shutil.copytree(REPO / "samples", workdir / "samples")
    for name, text in (extra_rules or {}).items():
        (workdir / "rules" / name).write_text(text)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = base_env(
        workdir,
        ROUTER_REDIS_URL=redis_url,
        ROUTER_SECRET_SLACK_WEBHOOK_URL=f"{url}/inbox/slack",
        ROUTER_SWEEP_INTERVAL="2",
        ROUTER_RETRY_SCHEDULE="",
        ROUTER_SECRET_KEY="x" * 43 + "=",
        **extra_env,
    )
    database_url = env["ROUTER_DATABASE_URL"]
    token = admin_token_for(database_url)
    create_user(database_url, "admin", "admin")
    create_user(database_url, "viewer", "viewer")
    with ExitStack() as stack:
        stack.enter_context(running(["serve", "--port", str(port)], env, workdir, ready_url=f"{url}/health"))
        stack.enter_context(running(["worker"], env, workdir))
        yield Stack(url, database_url, workdir, token, env)


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Any, stack: Stack, *, viewport: tuple[int, int] = (1280, 860)) -> Any:
    """A page whose console is watched: any Content-Security-Policy violation is recorded on the stack."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, base_url=stack.url)
    page = context.new_page()
    page.set_default_timeout(10_000)

    def console(message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text or "Refused to" in text:
            stack.csp_violations.append(f"{page.url}: {text}")

    page.on("console", console)
    page.on("pageerror", lambda error: stack.csp_violations.append(f"{page.url}: page error: {error}"))
    return page


def sign_in(page: Any, username: str = "admin", password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("[data-testid=whoami]")


def settled(page: Any) -> None:
    """Wait until htmx has no request in flight and has wired up what it last swapped in.

    htmx attaches a swapped-in element's triggers in its settle phase (20 ms after the swap), so an element
    can be on the page, and typed into, before it listens; a person never types that fast, a test does.
    """
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")


def screenshot(page: Any, name: str) -> Path:
    """Save a screenshot under SCREENSHOTS (a temporary folder unless ROUTER_TEST_SCREENSHOTS_DIR says)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
