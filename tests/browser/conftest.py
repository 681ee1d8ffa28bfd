"""Fixtures the browser tests share; each module defines its own ``stack`` (the processes it drives)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.support import Stack, chromium


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    with chromium() as running_browser:
        yield running_browser


@pytest.fixture
def no_csp_violations(stack: Stack) -> Iterator[None]:
    """Fails the test when a page broke its Content-Security-Policy or threw (opt in with usefixtures)."""
    stack.csp_violations.clear()
    yield
    assert stack.csp_violations == [], "the page broke its Content-Security-Policy or threw:\n" + "\n".join(
        stack.csp_violations
    )
