"""The operator pages: overview, events (live), one event, dead letters; replay, retry, bulk retry, resume.

Real webhooks go through the app and its worker to a pytest-httpserver sink; the pages are read
signed in through the real form, and the buttons are pressed as htmx would (CSRF header, HX-Request).
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request as WRequest
from werkzeug import Response as WResponse

from router.pipeline.signatures import VerifyConfig, sign
from tests.conftest import Router, RouterFactory, eventually, sign_in

pytestmark = pytest.mark.ui  # these tests use the web UI's pages

HOSTILE = "<script>alert(1)</script>"
GITHUB_SECRET = "gh-secret-for-tests"


def rules(base: str) -> dict[str, str]:
    return {
        "shop.yaml": f"""
        sources:
          - {{id: shop, verify: {{scheme: none}}}}
          - {{id: gh, verify: {{scheme: github, secret: {GITHUB_SECRET}}}}}
        rules:
          - id: notify
            source: shop
            filter: body.kind == 'order'
            steps:
              - id: post
                action: http
                with: {{url: "{base}/ok", method: POST, json: {{order: "{{{{ body.id }}}}"}}}}
          - id: ship
            source: shop
            filter: body.kind == 'order' && body.total > `100`
            steps:
              - id: label
                action: http
                with: {{url: "{base}/fail", method: POST, json: {{order: "{{{{ body.id }}}}"}}}}
          - id: refunds
            source: shop
            filter: body.kind == 'refund' && body.total > `1`
            steps:
              - id: post
                action: http
                with: {{url: "{base}/ok", method: POST, json: {{}}}}
          - id: pushes
            source: gh
            steps:
              - id: post
                action: http
                with: {{url: "{base}/ok", method: POST, json: {{}}}}
        """
    }


class Sink:
    """``/ok`` answers 200; ``/fail`` answers 500 until ``heal()``; ``/gone`` answers 410."""

    def __init__(self, server: HTTPServer) -> None:
        self.healed = False
        self.base = server.url_for("").rstrip("/")
        server.expect_request("/ok").respond_with_json({"ok": True})
        server.expect_request("/fail").respond_with_handler(self._fail)
        server.expect_request("/gone").respond_with_data("gone", status=410)

    def _fail(self, _request: WRequest) -> WResponse:
        if self.healed:
            return WResponse(json.dumps({"ok": True}), status=200, content_type="application/json")
        return WResponse("upstream broke", status=500)

    def heal(self) -> None:
        self.healed = True


def api(r: Router) -> dict[str, str]:
    return {"authorization": f"Bearer {r.token}"}


async def send_order(r: Router, order_id: str, total: int = 150, **extra: Any) -> str:
    response = await r.hook("shop", {"kind": "order", "id": order_id, "total": total, **extra})
    assert response.status_code == 202, response.text
    return str(response.json()["event_id"])


async def final(r: Router, event_id: str) -> dict[str, Any]:
    return await r.wait_event(event_id)


async def api_event(r: Router, event_id: str) -> dict[str, Any]:
    response = await r.client.get(f"/api/events/{event_id}", headers=api(r))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def audit_actions(r: Router) -> list[tuple[str, str, str]]:
    response = await r.client.get("/api/audit", headers=api(r))
    assert response.status_code == 200, response.text
    return [(e["actor"], e["action"], e["target"]) for e in response.json()["entries"]]


def htmx(csrf: str | None) -> dict[str, str]:
    headers = {"hx-request": "true"}
    if csrf is not None:
        headers["x-csrf-token"] = csrf
    return headers


async def switch_user(r: Router, username: str, role: str) -> str:
    """Sign out (forget the session cookie) and sign in as someone else; returns the new CSRF token."""
    r.client.cookies.clear()
    return await sign_in(r, username, role)


def run_of(event: dict[str, Any], rule: str) -> dict[str, Any]:
    return next(run for run in event["runs"] if run["rule_id"] == rule)


# -- pages for a viewer ------------------------------------------------------------------------------------


async def test_every_page_renders_for_a_viewer_with_real_data(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    sink = Sink(httpserver)
    async with router_factory(rules(sink.base)) as r:
        event_id = await send_order(r, "ord-1")
        event = await final(r, event_id)
        assert event["status"] == "failed"
        assert run_of(event, "notify")["status"] == "succeeded"
        dead = run_of(event, "ship")
        assert dead["status"] in ("dead", "failed")
        await sign_in(r, "watcher", "viewer")

        overview = await r.client.get("/")
        assert overview.status_code == 200, overview.text
        text = overview.text
        assert 'data-testid="source-url-shop">http://testserver.local/hooks/shop</code>' in text
        assert 'data-copy="http://testserver.local/hooks/shop"' in text
        assert 'data-testid="source-count-shop">1<' in text
        for chart in ("chart-events", "chart-deliveries", "chart-latency", "chart-failures"):
            assert re.search(rf'data-testid="{chart}"><svg [^>]*role="img"', text), chart
        deliveries = text.split('data-testid="chart-deliveries"', 1)[1].split("</figure>", 1)[0]
        assert "stacked-chart" in deliveries  # counts drawn as bars, like events and failures
        assert "<polyline" not in deliveries
        failing = text.split('data-testid="failing-destinations"', 1)[1]
        host = sink.base.removeprefix("http://")
        assert f"http://{host}" in failing
        assert "upstream broke" in failing or "500" in failing
        link = re.search(r'href="(/events\?destination=[^"]+)" data-testid="failing-destination-events"', failing)
        assert link, "a failing destination links to its events"
        its_events = await r.client.get(html.unescape(link.group(1)))
        assert f'data-event-id="{event_id}"' in its_events.text
        assert 'data-testid="filter-destination"' in its_events.text
        other = await r.client.get("/events?destination=https://elsewhere.example:443")
        assert f'data-event-id="{event_id}"' not in other.text
        assert 'data-testid="resume-button"' not in text  # nothing paused, and a viewer cannot anyway

        listing = await r.client.get("/events")
        assert listing.status_code == 200
        assert listing.text.count('data-testid="event-row"') == 1
        assert f'href="/events/{event_id}"' in listing.text
        worst = dead["status"]  # the list shows the event's worst run state, not only "failed"
        assert f'<span class="badge {worst}" data-testid="event-status">{worst}</span>' in listing.text
        assert 'data-testid="events-live"' in listing.text  # the first page polls for new rows

        detail = await r.client.get(f"/events/{event_id}")
        assert detail.status_code == 200
        page = detail.text
        assert f'data-testid="run-{dead["id"]}"' in page
        assert f'data-testid="run-{run_of(event, "notify")["id"]}"' in page
        assert page.count('data-testid="step-status"') == 2
        assert 'data-testid="explain-refunds"' in page
        assert 'data-testid="explain-notify"' in page
        assert 'hx-trigger="every' not in page  # every run is final: no polling
        assert 'data-testid="replay-button"' not in page
        assert 'data-testid="retry-button"' not in page
        assert 'data-testid="replay-needs-editor"' in page

        letters = await r.client.get("/dead-letters")
        assert letters.status_code == 200
        assert letters.text.count('data-testid="dead-letter-row"') == 1
        assert f'href="/events/{event_id}#run-{dead["id"]}"' in letters.text
        assert "upstream broke" in letters.text or "500" in letters.text
        assert 'data-testid="bulk-preview"' not in letters.text
        assert 'data-testid="bulk-needs-editor"' in letters.text


async def test_explain_says_why_a_rule_did_not_match(router_factory: RouterFactory, httpserver: HTTPServer) -> None:
    sink = Sink(httpserver)
    async with router_factory(rules(sink.base), worker=False) as r:
        event_id = await send_order(r, "ord-2", total=5)
        await sign_in(r, "watcher", "viewer")
        page = (await r.client.get(f"/events/{event_id}")).text
        assert f'hx-get="/events/{event_id}/explain?rule=refunds"' in page
        assert 'hx-trigger="toggle once from:closest details"' in page
        response = await r.client.get(f"/events/{event_id}/explain", params={"rule": "refunds"})
        assert response.status_code == 200
        text = html.unescape(response.text)
        assert 'data-matched="false"' in response.text
        assert "body.kind == 'refund'" in text
        assert '"order"' in text  # the operand's value
        assert 'data-testid="short-circuited"' in response.text  # body.total > `1` was not needed
        ship = await r.client.get(f"/events/{event_id}/explain", params={"rule": "ship"})
        assert "body.total > `100`" in html.unescape(ship.text)
        assert re.search(r"<code class=\"x-value\" data-testid=\"explain-value\">5</code>", ship.text)
        missing = await r.client.get(
            f"/events/{event_id}/explain", params={"rule": "nope"}, headers={"accept": "text/html"}
        )
        assert missing.status_code == 404
        assert "is not loaded now" in missing.text


# -- escaping and redaction --------------------------------------------------------------------------------


async def test_hostile_bodies_and_headers_are_escaped(router_factory: RouterFactory, httpserver: HTTPServer) -> None:
    sink = Sink(httpserver)
    async with router_factory(rules(sink.base), worker=False) as r:
        body = {"kind": HOSTILE, HOSTILE: HOSTILE, "id": HOSTILE}
        event_id = (await r.hook("shop", body, headers={"x-evil": HOSTILE, HOSTILE[1:7]: "x"})).json()["event_id"]
        text_id = (
            await r.hook("shop", content=f"plain {HOSTILE}".encode(), headers={"content-type": "text/plain"})
        ).json()["event_id"]
        await sign_in(r, "watcher", "viewer")
        pages = [
            await r.client.get("/events"),
            await r.client.get(f"/events/{event_id}"),
            await r.client.get(f"/events/{text_id}"),
            await r.client.get(f"/events/{event_id}/explain", params={"rule": "notify"}),
            await r.client.get("/events/rows", params={"watch": event_id}),
            await r.client.get(f"/events/{event_id}/runs"),
        ]
        for response in pages:
            assert response.status_code == 200, response.text
            assert HOSTILE not in response.text
            assert "<script>alert" not in response.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[1].text  # shown, as text
        assert "plain &lt;script&gt;" in pages[2].text
        assert "x-evil" in pages[1].text


async def test_credentials_and_signatures_are_redacted(router_factory: RouterFactory, httpserver: HTTPServer) -> None:
    sink = Sink(httpserver)
    async with router_factory(rules(sink.base), worker=False) as r:
        raw = json.dumps({"zen": "hello"}).encode()
        signed, _ = sign(VerifyConfig("github", GITHUB_SECRET), raw)
        headers = {"content-type": "application/json", "authorization": "Bearer hunter2", **signed}
        response = await r.client.post("/hooks/gh", content=raw, headers=headers)
        assert response.status_code == 202, response.text
        event_id = response.json()["event_id"]
        signature = signed["x-hub-signature-256"]
        shown = await api_event(r, event_id)
        assert shown["headers"]["authorization"] == "[redacted]"
        assert shown["headers"]["x-hub-signature-256"] == "[redacted]"
        await sign_in(r, "watcher", "viewer")
        page = (await r.client.get(f"/events/{event_id}")).text
        assert "hunter2" not in page
        assert signature not in page
        assert signature.removeprefix("sha256=") not in page
        assert page.count("[redacted]") >= 2


# -- live updates ------------------------------------------------------------------------------------------


async def test_live_rows_bring_only_newer_events_and_refresh_watched_ones(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    sink = Sink(httpserver)
    async with router_factory(rules(sink.base), worker=False) as r:
        first = await send_order(r, "ord-a")
        second = await send_order(r, "ord-b")
        unsigned = await r.hook("gh", content=b"{}", headers={"content-type": "application/json"})
        assert unsigned.status_code == 401  # refused: never listed
        await sign_in(r, "watcher", "viewer")
        page = (await r.client.get("/events")).text
        assert f"after={second}" in html.unescape(page)  # the poller asks for what is newer than the newest
        assert f"watch={second}%2C{first}" in html.unescape(page)  # and again for rows still in progress

        response = await r.client.get("/events/rows", params={"after": first})
        assert response.status_code == 200
        rows = re.findall(r'<tr id="event-row-(\w+)"[^>]*data-testid="event-row"[^>]*>', response.text)
        assert rows == [second]
        assert f"after={second}" in html.unescape(response.text)  # the next poll starts past it
        assert 'id="events-live"' in response.text
        assert 'hx-swap-oob="true"' in response.text

        nothing = await r.client.get("/events/rows", params={"after": second})
        assert 'data-testid="event-row"' not in nothing.text
        assert f"after={second}" in html.unescape(nothing.text)

        watched = await r.client.get("/events/rows", params={"after": second, "watch": first})
        assert re.search(rf'<tr id="event-row-{first}"[^>]*hx-swap-oob="true"', watched.text)

        filtered = await r.client.get("/events/rows", params={"source": "gh"})
        assert 'data-testid="event-row"' not in filtered.text

        older = await r.client.get("/events", params={"before": second})
        assert 'data-testid="events-live"' not in older.text  # an older page does not poll
        assert 'data-testid="live-paused"' in older.text
        assert f'data-event-id="{first}"' in older.text
        assert f'data-event-id="{second}"' not in older.text


async def test_event_page_polls_its_runs_until_they_are_final(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    sink = Sink(httpserver)
    async with router_factory(rules(sink.base), worker=False) as r:
        event_id = await send_order(r, "ord-c", total=1)
        await sign_in(r, "watcher", "viewer")
        page = (await r.client.get(f"/events/{event_id}")).text
        assert f'hx-get="/events/{event_id}/runs" hx-trigger="every 1s"' in page
        assert "Not routed yet" in page
    async with router_factory(rules(sink.base)) as r:
        event_id = await send_order(r, "ord-d", total=1)
        await final(r, event_id)
        await sign_in(r, "watcher", "viewer")
        fragment = await r.client.get(f"/events/{event_id}/runs", headers={"hx-request": "true"})
        assert fragment.status_code == 200
        assert "hx-trigger" not in fragment.text.split('id="event-status"')[0]
        assert '<span id="event-status" hx-swap-oob="true">' in fragment.text
        assert 'data-testid="event-status">succeeded<' in fragment.text


# -- filters and pages -------------------------------------------------------------------------------------


async def test_filters_search_and_pages(router_factory: RouterFactory, httpserver: HTTPServer) -> None:
    sink = Sink(httpserver)
    async with router_factory(rules(sink.base), worker=False) as r:
        ids = [await send_order(r, f"bulk-{i}", total=i) for i in range(52)]
        needle = await send_order(r, "needle", note="Find Me Here")
        await sign_in(r, "watcher", "viewer")

        first = await r.client.get("/events")
        assert first.text.count('data-testid="event-row"') == 50
        older = re.search(r'href="/events\?before=(\w+)" data-testid="events-older"', first.text)
        assert older
        second = await r.client.get("/events", params={"before": older.group(1)})
        assert second.text.count('data-testid="event-row"') == 3
        assert f'data-event-id="{ids[0]}"' in second.text

        found = await r.client.get("/events", params={"q": "find me"})
        assert found.text.count('data-testid="event-row"') == 1
        assert f'data-event-id="{needle}"' in found.text
        assert 'data-testid="search-scope"' in found.text
        pct = await r.client.get("/events", params={"q": "100%"})
        assert 'data-testid="event-row"' not in pct.text

        by_status = await r.client.get("/events", params={"status": "succeeded"})
        assert 'data-testid="event-row"' not in by_status.text
        by_source = await r.client.get("/events", params={"source": "shop", "since": "1h"})
        assert by_source.text.count('data-testid="event-row"') == 50

        wrong = await r.client.get("/events", params={"status": "bogus", "since": "2y"})
        assert wrong.status_code == 200
        assert 'data-testid="filter-error"' in wrong.text
        assert "since: &#39;2y&#39; is not one of 15m, 1h, 24h, 7d" in wrong.text

        api_found = await r.client.get("/api/events", params={"q": "FIND ME"}, headers=api(r))
        assert [e["id"] for e in api_found.json()["events"]] == [needle]

        missing = await r.client.get("/events/01NOPE", headers={"accept": "text/html"})
        assert missing.status_code == 404
        assert "no event" in missing.text


# -- replay and retry --------------------------------------------------------------------------------------


async def test_replay_and_retry_buttons(router_factory: RouterFactory, httpserver: HTTPServer) -> None:
    sink = Sink(httpserver)
    async with router_factory(rules(sink.base)) as r:
        event_id = await send_order(r, "ord-r")
        event = await final(r, event_id)
        dead = run_of(event, "ship")

        csrf = await sign_in(r, "watcher", "viewer")
        denied = await r.client.post(f"/events/{event_id}/replay", headers=htmx(csrf), data={})
        assert denied.status_code == 403
        assert "editor" in denied.text

        csrf = await switch_user(r, "operator", "editor")
        page = (await r.client.get(f"/events/{event_id}")).text
        assert 'data-testid="replay-button"' in page
        assert page.count('data-testid="retry-button"') == 1  # only the dead run has one
        assert f'hx-post="/runs/{dead["id"]}/retry"' in page

        no_csrf = await r.client.post(f"/events/{event_id}/replay", headers=htmx(None), data={})
        assert no_csrf.status_code == 403
        assert "CSRF" in no_csrf.text

        replayed = await r.client.post(f"/events/{event_id}/replay", headers=htmx(csrf), data={})
        assert replayed.status_code == 200, replayed.text
        assert 'data-testid="action-notice"' in replayed.text
        assert "Replayed: 2 new run(s) (notify, ship)" in replayed.text
        assert "1 step(s) already sent were skipped" in replayed.text
        assert '<section id="runs"' in replayed.text
        assert 'hx-swap-oob="true"' in replayed.text

        await eventually(lambda: all_final(r, event_id, 4), what="the replayed runs to end")

        sink.heal()
        retried = await r.client.post(f"/runs/{dead['id']}/retry", headers=htmx(csrf), data={"from": "failed_step"})
        assert retried.status_code == 200, retried.text
        assert f"Run {dead['id']} is retried from its failed step." in retried.text

        async def healed() -> bool:
            runs = (await api_event(r, event_id))["runs"]
            return any(run["id"] == dead["id"] and run["status"] == "succeeded" for run in runs)

        await eventually(healed, what="the retried run to succeed")
        again = await r.client.post(f"/runs/{dead['id']}/retry", headers=htmx(csrf), data={})
        assert again.status_code == 200
        assert "Cannot retry" in again.text
        assert "only failed or dead runs are retried" in again.text
        assert 'role="alert"' in again.text

        plain = await r.client.post(f"/events/{event_id}/replay", data={"_csrf": csrf, "resend": "on"})
        assert plain.status_code == 200  # without htmx: the whole page with the notice
        assert "<h1>Event" in plain.text
        assert "Replayed: 2 new run(s)" in plain.text

        actions = await audit_actions(r)
        assert ("operator (session)", "event_replay", event_id) in actions
        assert ("operator (session)", "run_retry", dead["id"]) in actions
        assert not any(actor.startswith("watcher") and action == "event_replay" for actor, action, _ in actions)


async def test_bulk_retry_previews_then_confirms(router_factory: RouterFactory, httpserver: HTTPServer) -> None:
    sink = Sink(httpserver)
    async with router_factory(rules(sink.base)) as r:
        events = [await final(r, await send_order(r, f"ord-{i}")) for i in range(3)]
        dead_ids = [run_of(e, "ship")["id"] for e in events]
        csrf = await sign_in(r, "operator", "editor")
        page = await r.client.get("/dead-letters", params={"rule": "ship", "since": "24h"})
        assert page.text.count('data-testid="dead-letter-row"') == 3
        since_at = re.search(r'name="since_at" value="([^"]+)"', page.text)
        assert since_at
        assert since_at.group(1)
        selection = {"rule": "ship", "source": "", "status": "", "since_at": html.unescape(since_at.group(1))}

        one = await r.client.post("/dead-letters/preview", headers=htmx(csrf), data={**selection, "run": dead_ids[0]})
        assert one.status_code == 200, one.text
        assert re.search(r'data-testid="bulk-runs"><strong>1</strong>', one.text)

        preview = await r.client.post("/dead-letters/preview", headers=htmx(csrf), data=selection)
        assert re.search(r'data-testid="bulk-runs"><strong>3</strong> run\(s\) of 3 event\(s\)', preview.text)
        assert re.search(r'data-testid="bulk-steps"><strong>3</strong> step\(s\) would be sent', preview.text)
        token = re.search(r'name="confirm" value="(\w+)"', preview.text)
        assert token
        assert 'data-testid="bulk-confirm"' in preview.text

        stale = await r.client.post(
            "/dead-letters/retry", headers=htmx(csrf), data={**selection, "confirm": "0000000000000000"}
        )
        assert "Not retried" in stale.text
        assert "preview again" in stale.text

        sink.heal()
        done = await r.client.post(
            "/dead-letters/retry", headers=htmx(csrf), data={**selection, "confirm": token.group(1)}
        )
        assert done.status_code == 200, done.text
        assert "Retried 3 run(s)." in done.text
        assert '<tbody id="dead-rows" hx-swap-oob="true">' in done.text

        async def all_delivered() -> bool:
            letters = await r.client.get("/api/dead-letters", headers=api(r))
            return letters.json()["dead_letters"] == []

        await eventually(all_delivered, what="the retried runs to succeed")
        assert ("operator (session)", "runs_retry_bulk", "3 run(s)") in await audit_actions(r)

        viewer_csrf = await switch_user(r, "watcher", "viewer")
        refused = await r.client.post("/dead-letters/preview", headers=htmx(viewer_csrf), data=selection)
        assert refused.status_code == 403


# -- destinations, and the API's audit entries -------------------------------------------------------------


async def test_a_paused_destination_is_resumed_from_the_overview(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    sink = Sink(httpserver)
    files = {
        "gone.yaml": f"""
        sources: [{{id: old, verify: {{scheme: none}}}}]
        rules:
          - id: to-gone
            source: old
            steps:
              - id: post
                action: http
                with: {{url: "{sink.base}/gone", method: POST, json: {{}}}}
        """
    }
    async with router_factory(files) as r:
        response = await r.hook("old", {"n": 1})
        event_id = response.json()["event_id"]

        async def held() -> bool:
            data = await api_event(r, event_id)
            return bool(data["runs"]) and data["runs"][0]["status"] == "held"

        await eventually(held, what="the run to be held by the paused destination")
        csrf = await sign_in(r, "operator", "editor")
        overview = (await r.client.get("/")).text
        section = overview.split('data-testid="failing-destinations"', 1)[1]
        assert 'data-testid="destination-paused"' in section
        assert 'data-testid="resume-button"' in section
        key = re.search(r'name="destination" value="([^"]+)"', section)
        assert key
        resumed = await r.client.post(
            "/destinations/resume", headers=htmx(csrf), data={"destination": html.unescape(key.group(1))}
        )
        assert resumed.status_code == 200, resumed.text
        assert "Resumed" in resumed.text
        assert "1 held run(s)" in resumed.text
        assert resumed.text.lstrip().startswith('<section id="failing-destinations"')
        assert ("operator (session)", "destination_resume", html.unescape(key.group(1))) in await audit_actions(r)
        assert html.unescape(key.group(1)) == sink.base  # scheme, host and port


async def test_the_api_audits_replay_retry_bulk_and_resume(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    sink = Sink(httpserver)
    async with router_factory(rules(sink.base)) as r:
        event = await final(r, await send_order(r, "ord-api"))
        dead = run_of(event, "ship")
        assert (await r.client.post(f"/api/runs/{dead['id']}/retry", json={})).status_code == 202
        await eventually(lambda: all_final(r, event["id"], 2), what="the retried run to end")
        assert (await r.client.post(f"/api/events/{event['id']}/replay", json={})).status_code == 202
        await eventually(lambda: all_final(r, event["id"], 4), what="the replayed runs to end")
        preview = (await r.client.post("/api/runs/retry", json={"rule": "ship"})).json()
        assert (preview["runs"], preview["steps_to_send"]) == (2, 2)  # the first run (dead again) and the replay's
        one = (await r.client.post("/api/runs/retry", json={"rule": "ship", "run_ids": [dead["id"]]})).json()
        assert one["runs"] == 1
        confirmed = await r.client.post("/api/runs/retry", json={"rule": "ship", "confirm": preview["confirm"]})
        assert confirmed.status_code == 202, confirmed.text
        paused = await r.client.post("/api/destinations/resume", json={"destination": "https://nowhere.example:443"})
        assert paused.status_code == 404  # nothing to resume: nothing audited
        actions = {(actor, action, target) for actor, action, target in await audit_actions(r)}
        assert ("test-admin (token)", "run_retry", dead["id"]) in actions
        assert ("test-admin (token)", "event_replay", event["id"]) in actions
        assert ("test-admin (token)", "runs_retry_bulk", "2 run(s)") in actions
        assert not any(action == "destination_resume" for _, action, _ in actions)


async def all_final(r: Router, event_id: str, runs: int) -> bool:
    """The event has ``runs`` runs and every one has ended."""
    data = await api_event(r, event_id)
    return len(data["runs"]) == runs and all(run["status"] in ("succeeded", "failed", "dead") for run in data["runs"])
