"""Forms answer a change with a redirect (Post/Redirect/Get): reloading the page sends nothing again, and a
value shown once (a new API token) is shown once."""

from __future__ import annotations

import pytest

from tests.conftest import RouterFactory, sign_in

pytestmark = pytest.mark.ui
RULES = {
    "r.yaml": """
        sources:
          - id: shop
          - id: sink
        rules:
          - id: r
            source: shop
            steps:
              - id: e
                action: emit
                with: {source: sink}
    """
}


async def test_creating_a_token_redirects_and_shows_it_once(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r, "prg", "editor")
        posted = await r.client.post("/settings/tokens", data={"_csrf": csrf, "name": "laptop"}, follow_redirects=False)
        assert posted.status_code == 303
        target = posted.headers["location"]
        assert target.startswith("/settings/users?flash=")
        first = await r.client.get(target)
        assert "Token &#39;laptop&#39; created" in first.text
        assert 'data-testid="shown-once"' in first.text or "not shown again" in first.text
        again = await r.client.get(target)  # a reload
        assert "created" not in again.text
        tokens = (await r.client.get("/api/tokens")).json()
        names = [t["name"] for t in (tokens["tokens"] if isinstance(tokens, dict) else tokens)]
        assert names.count("laptop") == 1, "the token was made once"


async def test_replay_without_javascript_redirects_to_the_event_with_the_notice(router_factory: RouterFactory) -> None:
    async with router_factory(RULES) as r:
        event = await r.wait_event((await r.hook("shop", {"n": 1})).json()["event_id"])
        csrf = await sign_in(r, "prg", "editor")
        posted = await r.client.post(f"/events/{event['id']}/replay", data={"_csrf": csrf}, follow_redirects=False)
        assert posted.status_code == 303
        assert posted.headers["location"].startswith(f"/events/{event['id']}?flash=")
        shown = await r.client.get(posted.headers["location"])
        assert "Replayed: 1 new run(s)" in shown.text
        reloaded = await r.client.get(posted.headers["location"])
        assert "Replayed" not in reloaded.text
