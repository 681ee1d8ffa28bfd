"""A paginated JSON API on loopback for the polling tests: a real HTTP server (pytest-httpserver, threaded).

``GET /orders?updated_since=…`` lists the items updated at or after ``updated_since``, oldest first,
``page_size`` per page; the next page is given in the body (``next_page``), in a ``Link`` header, or
as Stripe does (``has_more`` and ``starting_after``), as ``style`` says. It answers ``If-None-Match``
with 304 when the page is unchanged, can answer 429 with ``Retry-After``, can hold a page until the
test lets it go, and records every request and how many were in flight at once.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response


@dataclass
class Seen:
    at: float
    query: dict[str, str]
    headers: dict[str, str]
    status: int = 0


@dataclass
class PagedAPI:
    server: HTTPServer
    style: str = "body"  # body | link | stripe
    page_size: int = 2
    items: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0  # seconds each answer takes
    hold_page: int | None = None  # the first request for this page waits until ``release`` is set
    release: threading.Event = field(default_factory=threading.Event)
    reached_hold: threading.Event = field(default_factory=threading.Event)
    # request number (1-based, counting every request) → (status, Retry-After or None) to answer instead
    plan: dict[int, tuple[int, str | None]] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, server: HTTPServer, **kwargs: Any) -> PagedAPI:
        api = cls(server, **kwargs)
        server.expect_request("/orders").respond_with_handler(api.handle)
        return api

    @property
    def url(self) -> str:
        return str(self.server.url_for("/orders"))

    def add(self, n: int, start: int = 0, updated: str = "2026-12-01T10:00:{:02d}Z") -> list[dict[str, Any]]:
        new = [
            {"id": f"o-{start + i}", "updated_at": updated.format(start + i), "total": 10 + start + i} for i in range(n)
        ]
        with self.lock:
            self.items.extend(new)
        return new

    def pages_served(self) -> int:
        return sum(1 for r in self.requests if r.status == 200)

    def handle(self, request: Request) -> Response:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            seen = Seen(time.time(), dict(request.args), {k.lower(): v for k, v in request.headers.items()})
            self.requests.append(seen)
        try:
            response = self._answer(request)
            seen.status = response.status_code
            return response
        finally:
            with self.lock:
                self.in_flight -= 1

    def _answer(self, request: Request) -> Response:
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            planned = self.plan.pop(len(self.requests), None)
            if planned is not None:
                status, retry_after = planned
                headers = {"retry-after": retry_after} if retry_after is not None else {}
                body = json.dumps({"error": "rate limited" if status == 429 else "unavailable"})
                return Response(body, status=status, headers=headers, content_type="application/json")
            since = request.args.get("updated_since", "")
            listed = sorted(
                (i for i in self.items if i["updated_at"] >= since), key=lambda i: (i["updated_at"], i["id"])
            )
        start = 0
        if self.style == "stripe":
            after = request.args.get("starting_after")
            if after:
                start = next(n for n, i in enumerate(listed) if i["id"] == after) + 1
        else:
            start = int(request.args.get("offset", "0"))
        page_items = listed[start : start + self.page_size]
        more = start + self.page_size < len(listed)
        number = start // self.page_size + 1
        if self.hold_page is not None and number == self.hold_page and not self.reached_hold.is_set():
            self.reached_hold.set()  # the first request for that page waits; later ones do not
            self.release.wait(60)
        query = {k: v for k, v in request.args.items() if k != "offset"}
        next_url = f"{self.url}?{urlencode(query | {'offset': start + self.page_size})}" if more else None
        headers: dict[str, str] = {}
        if self.style == "body":
            body: Any = {"orders": page_items, "next_page": next_url}
        elif self.style == "link":
            body = {"orders": page_items}
            if next_url:
                headers["link"] = f'<{next_url}>; rel="next"'
        else:
            body = {"object": "list", "data": page_items, "has_more": more, "url": "/orders"}
        text = json.dumps(body)
        etag = '"' + hashlib.sha256(text.encode()).hexdigest()[:16] + '"'
        headers["etag"] = etag
        if request.headers.get("if-none-match") == etag:
            return Response(status=304, headers={"etag": etag})
        return Response(text, status=200, headers=headers, content_type="application/json")


def rules(api: PagedAPI, source: str = "shop-orders", every: str = "1s", extra: str = "", **fields: str) -> str:
    """A rule file polling the API in its style, and a rule sending nothing anywhere (so events get routed)."""
    next_expr = {
        "body": "body.next_page",
        "link": "link",
        "stripe": "body.has_more && {starting_after: body.data[-1].id}",
    }
    items = "body.data" if api.style == "stripe" else "body.orders"
    block = {
        "url": f'"{api.url}"',
        "every": every,
        "query": "{updated_since: \"{{ cursor | default('1970-01-01T00:00:00Z') }}\"}",
        "items": items,
        "id": "id",
        "cursor": f"max_by({items}, &updated_at).updated_at",
        "next": f'"{next_expr[api.style]}"',
    } | fields
    lines = "\n".join(f"      {k}: {v}" for k, v in block.items() if v != "")
    return f"""
sources:
  - id: {source}
    poll:
{lines}
{extra}
rules:
  - id: {source}-seen
    source: {source}
    steps:
      - id: note
        action: http
        when: "`false`"
        with: {{url: "http://127.0.0.1:9/never"}}
"""
