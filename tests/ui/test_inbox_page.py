"""The Inbox pages: every inbox, one inbox's requests (method, headers, body, live), and a browser opening
/inbox/<name> is shown the page instead of being recorded."""

from __future__ import annotations

import re

import pytest

from tests.conftest import RouterFactory

pytestmark = pytest.mark.ui
BROWSER = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8", "sec-fetch-mode": "navigate"}


async def test_inboxes_are_pages_and_viewing_is_not_catching(router_factory: RouterFactory) -> None:
    async with router_factory({"r.yaml": "sources:\n  - id: s\n"}, worker=False) as r:
        first = await r.client.post("/inbox/demo", json={"text": "hello from a rule"}, headers={"x-trace": "t-1"})
        assert first.status_code == 200
        await r.client.put("/inbox/other", content=b"plain words", headers={"content-type": "text/plain"})

        listing = await r.client.get("/inboxes")
        assert listing.status_code == 200
        rows = re.findall(r'data-testid="inbox-row" data-inbox="([^"]+)"', listing.text)
        assert rows == ["other", "demo"]  # the most recently used first
        assert "/inbox/demo" in listing.text

        viewed = await r.client.get("/inbox/demo", headers=BROWSER, follow_redirects=False)
        assert viewed.status_code == 303
        assert viewed.headers["location"] == "/inboxes/demo"
        assert len(await r.inbox("demo")) == 1, "opening the URL in a browser recorded a request"
        caught = await r.client.get("/inbox/demo?x=1", headers={"accept": "*/*"})  # a client's GET is caught
        assert caught.status_code == 200
        assert len(await r.inbox("demo")) == 2

        page = await r.client.get("/inboxes/demo")
        assert page.status_code == 200
        assert page.text.count('data-testid="inbox-request"') == 2
        assert "hello from a rule" in page.text
        assert "x-trace" in page.text
        assert 'data-testid="inbox-live"' in page.text
        assert '<span class="badge method">POST</span>' in page.text

        newer = await r.client.get(f"/inboxes/demo/rows?after={first.json()['id']}")
        assert newer.text.count('data-testid="inbox-request"') == 1
        assert "hello from a rule" not in newer.text
        empty = await r.client.get("/inboxes/nothing-here")
        assert 'data-testid="inbox-empty"' in empty.text
