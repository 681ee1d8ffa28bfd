"""Poll presets: ``poll: {preset: github-events, url: …}`` fills in how a known API is paged and read.

A preset is a set of defaults for a ``poll:`` or ``reconcile:`` block; the block's own fields win
(``headers`` and ``query`` are merged, the block's keys over the preset's). Each preset ships real
response pages under ``samples/<provider>/``, shaped as the provider documents them, with the
headers that page them (``Link``, ``ETag``); the tests poll them from a loopback server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAMPLES_DIR = Path(__file__).resolve().parent.parent.parent / "samples"


@dataclass(frozen=True)
class PageSample:
    """One recorded response page: the body file (exactly the provider's body) and its headers."""

    file: Path
    headers: Mapping[str, str] = field(default_factory=dict)
    status: int = 200

    def body(self) -> Any:
        return json.loads(self.file.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class PollPreset:
    name: str
    description: str
    fields: Mapping[str, Any]  # defaults for the poll block: url, headers, query, items, id, cursor, next, …
    event_type: str  # JMESPath giving a polled event's type (the item is the body)
    needs_url: str = ""  # when the preset has no url: what the user's url looks like
    pages: tuple[PageSample, ...] = ()


def _page(provider: str, name: str, headers: Mapping[str, str]) -> PageSample:
    return PageSample(SAMPLES_DIR / provider / f"{name}.json", {"content-type": "application/json"} | dict(headers))


_GITHUB_LINK = '<https://api.github.com/repositories/1296269/events?per_page=100&page={n}>; rel="{rel}"'
_SHOPIFY_URL = "https://event-router-demo.myshopify.com/admin/api/2025-01/orders.json"

POLL_PRESETS: dict[str, PollPreset] = {
    p.name: p
    for p in (
        PollPreset(
            "stripe-events",
            "Stripe's event list (GET /v1/events, newest first, paged with starting_after); "
            "as `reconcile:` of a Stripe webhook source it emits the events whose webhooks never came",
            {
                "url": "https://api.stripe.com/v1/events",
                "query": {"limit": "100", "created[gte]": "{{ cursor | default(since_unix) }}"},
                "items": "body.data",
                "id": "id",
                "cursor": "max_by(body.data, &created).created",
                "next": "body.has_more && {starting_after: body.data[-1].id}",
            },
            event_type="body.type",
            pages=(
                _page("stripe", "events-page-1", {"request-id": "req_V5aQ9bYh2kLm3N"}),
                _page("stripe", "events-page-2", {"request-id": "req_W7cR1dZj4nPq5T"}),
            ),
        ),
        PollPreset(
            "github-events",
            "A GitHub repository's events (GET /repos/{owner}/{repo}/events, newest first, Link paging, "
            "ETag so an unchanged poll costs nothing; at most 300 events)",
            {
                "headers": {"accept": "application/vnd.github+json", "x-github-api-version": "2022-11-28"},
                "query": {"per_page": "100"},
                "items": "body",
                "id": "id",
                "next": "link",
                "max_pages": 3,
                "etag": True,
                "stop_at_seen": True,
            },
            event_type="body.type",
            needs_url="https://api.github.com/repos/OWNER/REPO/events",
            pages=(
                _page(
                    "github",
                    "repo-events-page-1",
                    {
                        "etag": 'W/"7a4b1e0f3c2d9e8a6b5c4d3e2f1a0b9c"',
                        "x-poll-interval": "60",
                        "link": f"{_GITHUB_LINK.format(n=2, rel='next')}, {_GITHUB_LINK.format(n=2, rel='last')}",
                    },
                ),
                _page(
                    "github",
                    "repo-events-page-2",
                    {
                        "etag": 'W/"1f2e3d4c5b6a79880a9b8c7d6e5f4a3b"',
                        "x-poll-interval": "60",
                        "link": f"{_GITHUB_LINK.format(n=1, rel='prev')}, {_GITHUB_LINK.format(n=1, rel='first')}",
                    },
                ),
            ),
        ),
        PollPreset(
            "shopify-orders",
            "A Shopify store's orders (GET /admin/api/{version}/orders.json, updated_at_min, Link paging "
            "with page_info)",
            {
                "query": {
                    "status": "any",
                    "limit": "250",
                    "updated_at_min": "{{ cursor | default(since) }}",
                },
                "items": "body.orders",
                "id": "id",
                "cursor": "max_by(body.orders, &updated_at).updated_at",
                "next": "link",
            },
            event_type="'order'",
            needs_url="https://SHOP.myshopify.com/admin/api/2025-01/orders.json",
            pages=(
                _page(
                    "shopify",
                    "orders-page-1",
                    {
                        "x-shopify-shop-api-call-limit": "1/40",
                        "link": f"<{_SHOPIFY_URL}?limit=250&page_info=eyJsYXN0X2lkIjo1ODI4NTAyMjM0NTM2LCJsYXN0X3ZhbH"
                        'VlIjoiMjAyNi0xMS0yNSAxNToxNTowMC4wMDAwMDAiLCJkaXJlY3Rpb24iOiJuZXh0In0>; rel="next"',
                    },
                ),
                _page(
                    "shopify",
                    "orders-page-2",
                    {
                        "x-shopify-shop-api-call-limit": "2/40",
                        "link": f"<{_SHOPIFY_URL}?limit=250&page_info=eyJkaXJlY3Rpb24iOiJwcmV2IiwibGFzdF9pZCI6NT"
                        'gyODUwMjI2NzMwNCwibGFzdF92YWx1ZSI6IjIwMjYtMTEtMjUgMTU6NDA6MDAuMDAwMDAwIn0>; rel="previous"',
                    },
                ),
            ),
        ),
    )
}
