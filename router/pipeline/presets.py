"""Provider presets: ``preset: github`` on a source sets its verify scheme, tolerance, dedupe key and event type.

A preset is a set of defaults. The source still gives the secret (``verify: {secret: …}``), and any
``verify`` field, ``dedupe`` or ``event_type`` it writes overrides the preset's. Each preset ships
real sample payloads under ``samples/<preset>/``, listed by ``samples()``: the tests send them
through a real source, and a rule builder can offer their fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "samples"


@dataclass(frozen=True)
class Sample:
    """One real payload a provider sends: the body file and the headers that come with it."""

    preset: str
    name: str
    file: Path
    event_type: str
    headers: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    def body_bytes(self) -> bytes:
        return self.file.read_bytes()

    def body(self) -> Any:
        return json.loads(self.file.read_text(encoding="utf-8"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "name": self.name,
            "file": str(self.file),
            "event_type": self.event_type,
            "headers": dict(self.headers),
            "description": self.description,
        }


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    scheme: str
    event_type: str
    dedupe: str | None
    tolerance: int | None
    samples: tuple[Sample, ...] = ()


def _sample(preset: str, name: str, event_type: str, headers: Mapping[str, str], description: str) -> Sample:
    return Sample(preset, name, SAMPLES_DIR / preset / f"{name}.json", event_type, dict(headers), description)


_JSON = {"content-type": "application/json"}
_GITHUB = _JSON | {"user-agent": "GitHub-Hookshot/7a4c1b2", "x-github-hook-id": "512345678"}
_SHOPIFY = _JSON | {
    "x-shopify-shop-domain": "event-router-demo.myshopify.com",
    "x-shopify-api-version": "2025-01",
    "x-shopify-triggered-at": "2026-11-25T10:15:00.123456Z",
}
_STRIPE = _JSON | {"user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}
_SLACK = _JSON | {"user-agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "github",
            "GitHub repository and organization webhooks",
            scheme="github",
            event_type='headers."x-github-event"',
            dedupe='headers."x-github-delivery"',
            tolerance=None,
            samples=(
                _sample(
                    "github",
                    "push",
                    "push",
                    _GITHUB | {"x-github-event": "push", "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
                    "Two commits pushed to the default branch",
                ),
                _sample(
                    "github",
                    "pull_request",
                    "pull_request",
                    _GITHUB
                    | {"x-github-event": "pull_request", "x-github-delivery": "9a1b7f10-cc79-11e3-8f3e-51c9a6f2a0d1"},
                    "A pull request opened (action: opened)",
                ),
            ),
        ),
        Preset(
            "stripe",
            "Stripe account webhooks",
            scheme="stripe",
            event_type="body.type",
            dedupe="body.id",
            tolerance=300,
            samples=(
                _sample(
                    "stripe",
                    "payment_intent.succeeded",
                    "payment_intent.succeeded",
                    _STRIPE,
                    "A 129.00 USD payment succeeded",
                ),
                _sample("stripe", "charge.refunded", "charge.refunded", _STRIPE, "A charge fully refunded"),
            ),
        ),
        Preset(
            "shopify",
            "Shopify store webhooks",
            scheme="shopify",
            event_type='headers."x-shopify-topic"',
            dedupe='headers."x-shopify-webhook-id"',
            tolerance=None,
            samples=(
                _sample(
                    "shopify",
                    "orders-create",
                    "orders/create",
                    _SHOPIFY
                    | {
                        "x-shopify-topic": "orders/create",
                        "x-shopify-webhook-id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
                        "x-shopify-event-id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
                    },
                    "A new order with two line items",
                ),
            ),
        ),
        Preset(
            "slack",
            "Slack Events API (event_callback, url_verification)",
            scheme="slack",
            event_type="body.event.type || body.type",
            dedupe="body.event_id",
            tolerance=300,
            samples=(
                _sample("slack", "event_callback-message", "message", _SLACK, "A message posted in a channel"),
                _sample(
                    "slack",
                    "url_verification",
                    "url_verification",
                    _SLACK,
                    "The challenge Slack sends when the request URL is saved",
                ),
            ),
        ),
        Preset(
            "standard",
            "Any sender following the Standard Webhooks specification",
            scheme="standard",
            event_type="body.type",
            dedupe='headers."webhook-id"',
            tolerance=300,
            samples=(
                _sample(
                    "standard",
                    "invoice.paid",
                    "invoice.paid",
                    _JSON | {"webhook-id": "msg_2pV5bQk9Zr1xLwT4cY8dHn3aEf"},
                    "A Standard Webhooks payload: type, timestamp, data",
                ),
            ),
        ),
    )
}


def samples(preset: str | None = None) -> list[Sample]:
    """Every shipped sample payload, or those of one preset (unknown preset: an empty list)."""
    if preset is not None:
        found = PRESETS.get(preset)
        return list(found.samples) if found else []
    return [s for p in PRESETS.values() for s in p.samples]
