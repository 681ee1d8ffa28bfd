"""The UI against a hostile browser and hostile data: CSRF on every change, escaping on every page, CSP everywhere.

Routes and pages are found by walking ``app.routes``, so a page or handler added later is covered
without touching this file.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from router.access.guard import CSP
from tests.conftest import Router, RouterFactory, sign_in
from tests.ui.pages import fill, mutations, ui_pages

pytestmark = [pytest.mark.security, pytest.mark.ui]

SCRIPT = '<script>alert("xss")</script>'
HOSTILE = [
    SCRIPT,
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(2)>",
    "</textarea><script>alert(3)</script>",
    "</pre><iframe src=javascript:alert(4)>",
]
# What must never appear in a page: each payload's markup as markup.
RAW = ["<script>alert", "<img src=x onerror", "<svg onload", "<iframe src=javascript"]


class InlineCode(HTMLParser):
    """What a strict CSP would block, found by parsing (so text inside attribute values never counts)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name.lower(): value or "" for name, value in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style> element")
        for name, value in names.items():
            if name == "style":
                self.found.append(f"style attribute on <{tag}>")
            if name.startswith("on") or name.startswith(("hx-on", "data-hx-on")):
                self.found.append(f"{name} attribute on <{tag}>")
            if name in ("href", "src", "action", "formaction") and value.strip().lower().startswith("javascript:"):
                self.found.append(f"javascript: URL in <{tag} {name}>")


def inline_code(page: str) -> list[str]:
    parser = InlineCode()
    parser.feed(page)
    parser.close()
    return parser.found


def rules(sink: str) -> dict[str, str]:
    return {
        "r.yaml": f"""
        sources:
          - {{id: shop, verify: {{scheme: none}}}}
        rules:
          - id: notify
            source: shop
            description: "sends {{{{ body.name }}}} on"
            steps:
              - id: post
                action: http
                with:
                  url: "{sink}"
                  headers: {{x-name: "{{{{ body.name }}}}"}}
                  json: {{name: "{{{{ body.name }}}}", all: "{{{{ body }}}}"}}
        """
    }


async def hostile_data(r: Router, httpserver: HTTPServer) -> dict[str, str]:
    """An event whose body, headers and query carry every payload, a run that failed echoing them, and
    audit entries, a token and a failed sign-in whose names are payloads. Returns ids for the pages."""
    body = {"name": SCRIPT, "payloads": HOSTILE, "nested": {p: p for p in HOSTILE}}
    headers = {f"x-evil-{i}": p for i, p in enumerate(HOSTILE)}
    response = await r.client.post("/hooks/shop", json=body, headers=headers, params={"q": HOSTILE[1], "r": HOSTILE[3]})
    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]
    event = await r.wait_event(event_id)
    assert event["status"] == "failed"
    run_id = event["runs"][0]["id"]
    made = await r.client.post("/api/tokens", json={"name": HOSTILE[1]})
    assert made.status_code == 201
    bearer = r.client.headers.pop("authorization")
    form = await r.client.get("/login")
    login_csrf = re.search(r'name="_csrf" value="([^"]+)"', form.text)
    assert login_csrf
    failed = await r.client.post("/login", data={"username": SCRIPT, "password": "x", "_csrf": login_csrf.group(1)})
    assert failed.status_code == 401
    r.client.headers["authorization"] = bearer
    return {
        "event_id": event_id,
        "run_id": run_id,
        "rule_id": "notify",
        "source": "shop",
        "token_id": made.json()["id"],
        "username": "ui-admin",
    }


async def test_changes_need_the_csrf_token_everywhere(router_factory: RouterFactory) -> None:
    async with router_factory(rules("http://127.0.0.1:1/x"), worker=False) as r:
        csrf = await sign_in(r)
        routes = mutations(r.client.app)
        refused = 0
        for method, path in routes:
            url = fill(path, {})
            attempts: list[dict[str, Any]] = [
                {"json": {}},  # an API-style call with the cookie only
                {"data": {"name": "x"}},  # a cross-site form post: no _csrf field
                {"json": {}, "headers": {"x-csrf-token": csrf[:-2] + "xx"}},  # a wrong token
                {"data": {"_csrf": ""}},  # an empty one
            ]
            for kwargs in attempts:
                response = await r.client.request(method, url, **kwargs)
                assert response.status_code == 403, f"{method} {path} {kwargs}: {response.status_code}"
                assert "CSRF" in response.text, f"{method} {path}: {response.text[:200]}"
                refused += 1
        right = await r.client.post("/api/tokens", json={"name": "with-csrf"}, headers={"x-csrf-token": csrf})
        assert right.status_code == 201
        print(f"csrf: {len(routes)} mutating routes x 4 forged requests, {refused} refused 403; with the token: 201")
        assert refused == 4 * len(routes)


async def test_hostile_values_render_escaped_on_every_page(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/x").respond_with_data(f"upstream says {SCRIPT}", status=400)
    async with router_factory(rules(httpserver.url_for("/x"))) as r:
        ids = await hostile_data(r, httpserver)
        await sign_in(r)
        pages = ui_pages(r.client.app, ids)
        pages += ["/login?next=" + html.escape('/"><script>alert(5)</script>'), "/no-such-page"]
        showing: list[str] = []
        for url in pages:
            response = await r.client.get(url, headers={"accept": "text/html"})
            assert response.status_code < 500, f"{url}: {response.status_code}"
            text = response.text
            for raw in RAW:
                assert raw not in text, f"{url} renders {raw!r} unescaped"
            if "&lt;script&gt;alert" in text or "\\u003cscript\\u003ealert" in text or "&#34;&gt;&lt;img" in text:
                showing.append(url)
        print(
            f"xss: {len(HOSTILE)} payloads in event body, headers, query, step output, token name and sign-in name; "
            f"{len(pages)} pages fetched, {len(showing)} showed them escaped, 0 raw ({', '.join(sorted(showing))})"
        )
        assert any(p.startswith("/settings/audit") for p in showing)  # the failed sign-in's name
        assert any(p.startswith("/settings/users") for p in showing)  # the token's name


async def test_every_page_has_a_strict_csp_and_no_inline_code(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/x").respond_with_data("no", status=400)
    async with router_factory(rules(httpserver.url_for("/x"))) as r:
        ids = await hostile_data(r, httpserver)
        await sign_in(r)
        pages = [*ui_pages(r.client.app, ids), "/no-such-page"]
        html_pages = 0
        for url in pages:
            response = await r.client.get(url, headers={"accept": "text/html"})
            assert response.headers.get("content-security-policy") == CSP, url
            assert response.headers["x-frame-options"] == "DENY"
            if response.headers["content-type"].startswith("text/html"):
                html_pages += 1
                assert inline_code(response.text) == [], url
        r.client.cookies.clear()
        login = await r.client.get("/login")
        assert login.headers["content-security-policy"] == CSP
        assert "'unsafe-inline'" not in CSP
        assert "'unsafe-eval'" not in CSP
        print(f"csp: {html_pages + 1} HTML pages (incl. sign-in and a 404), all with the strict CSP, 0 inline code")
        assert html_pages >= 4
