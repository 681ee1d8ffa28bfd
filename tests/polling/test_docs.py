"""The worked examples of docs/polling.md run: each is polled from a loopback server (or a controlled clock).

The blocks marked ``# example: …`` are taken from the page as written; only the provider's URL is
pointed at a loopback server serving the documented responses (for Stripe, the pages in samples/).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response

from router.cli.commands import main
from router.pipeline.ingest import Incoming, accept
from router.pipeline.match import build_context, event_from_row, match_rules, render_step
from router.pipeline.signatures import sign
from router.pipeline.store import insert_events
from tests.conftest import REPO, write_rules
from tests.polling.paged_api import PagedAPI
from tests.polling.test_poller import Clock, make_poller

DOC = (REPO / "docs" / "polling.md").read_text(encoding="utf-8")
SAMPLES = REPO / "samples"


def example(name: str) -> str:
    match = re.search(rf"```yaml\n# example: {name}\n(.*?)```", DOC, re.DOTALL)
    assert match, f"docs/polling.md has no block marked '# example: {name}'"
    return match.group(1)


def console(command: str) -> list[str]:
    """The lines the page shows for ``$ command`` (up to the next prompt or the block's end)."""
    block = DOC.split(f"$ {command}\n", 1)[1].split("```", 1)[0]
    return [line for line in block.split("$ ", 1)[0].splitlines() if line.strip() and "…" not in line]


@pytest.fixture(autouse=True)
def own_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`router poll` sets up logging on the runner's stderr: undo it after."""
    monkeypatch.setattr(logging.root, "handlers", [])
    yield
    structlog.reset_defaults()


def test_example_poll_prints_what_the_page_shows(
    api_server: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = PagedAPI.start(api_server, style="body", page_size=2)
    api.add(6)
    text = example("poll").replace("https://shop.example.com/api/orders", api.url)
    write_rules(tmp_path / "rules", {"shop.yaml": text})
    monkeypatch.delenv("ROUTER_REDIS_URL", raising=False)
    monkeypatch.setenv("ROUTER_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'router.db'}")
    monkeypatch.setenv("ROUTER_RULES_DIR", str(tmp_path / "rules"))
    monkeypatch.setenv("ROUTER_EGRESS_ALLOW", "127.0.0.0/8")
    monkeypatch.setenv("ROUTER_SECRET_SHOP_TOKEN", "shop-token-1234")
    result = CliRunner().invoke(main, ["poll", "shop-orders", "--once", "--dry-run"])
    assert result.exit_code == 0, result.output
    for line in console("router poll shop-orders --once --dry-run"):
        assert line in result.output.splitlines(), (
            f"docs/polling.md shows {line!r}; the command printed:\n{result.output}"
        )
    assert api.requests[0].headers["authorization"] == "Bearer shop-token-1234"


def stripe_api(server: HTTPServer) -> str:
    pages = [json.loads((SAMPLES / "stripe" / f"events-page-{n}.json").read_text()) for n in (1, 2)]

    def handle(request: Request) -> Response:
        after = request.args.get("starting_after")
        page = pages[1] if after == pages[0]["data"][-1]["id"] else pages[0]
        return Response(json.dumps(page), content_type="application/json", headers={"request-id": "req_test"})

    server.expect_request("/v1/events").respond_with_handler(handle)
    return str(server.url_for("/v1/events"))


async def test_example_reconcile_recovers_only_the_webhooks_that_never_came(
    api_server: HTTPServer, tmp_path: Path
) -> None:
    url = stripe_api(api_server)
    text = example("reconcile").replace("preset: stripe-events", f'preset: stripe-events\n      url: "{url}"')
    env = {
        "STRIPE_WEBHOOK_SECRET": "whsec_docs_example",
        "ROUTER_SECRET_STRIPE_API_KEY": "sk_test_docs",
        "ROUTER_SECRET_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/X",
    }
    p = await make_poller(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'router.db'}", {"stripe.yaml": text}, env)
    try:
        # The provider delivered one webhook: payment_intent.succeeded. The other four never came.
        body = (SAMPLES / "stripe" / "payment_intent.succeeded.json").read_bytes()
        source = p.ruleset.sources["stripe-payments"]
        assert source.verify is not None
        headers, _ = sign(source.verify, body)
        row = accept(
            p.ruleset,
            Incoming(
                "stripe-payments",
                "POST",
                "/hooks/stripe-payments",
                {k.lower(): v for k, v in headers.items()} | {"content-type": "application/json"},
                {},
                body,
            ),
        )
        async with p.engine.begin() as conn:
            await insert_events(conn, [row])
        report = await p.poll("stripe-payments")
        assert (report.items, report.duplicates, len(report.new)) == (5, 1, 4), report
        assert api_server.log[0][0].headers["authorization"] == "Bearer sk_test_docs"
        assert api_server.log[1][0].args["starting_after"] == "evt_3QGdWyKZ8bLq1xYv0kP7sD4F"
        rows = await p.events("stripe-payments")
        recovered = [r for r in rows if r.via == "reconcile"]
        assert sorted(r.body["type"] for r in recovered) == [
            "charge.refunded",
            "customer.created",
            "payment_intent.created",
            "payment_method.attached",
        ]
        async with p.engine.connect() as conn:
            from sqlalchemy import select

            from router.records.models import Event

            stored = (await conn.execute(select(Event).where(Event.via == "reconcile"))).all()
        for event in stored:
            ctx = build_context(event_from_row(event), p.ruleset.secrets)
            matched = [rule.id for rule in match_rules(p.ruleset, "stripe-payments", ctx)]
            if event.body["type"] == "charge.refunded":
                assert matched == ["stripe-refund-to-support", "stripe-missed-webhooks"]
                tell = render_step(p.ruleset.rules["stripe-refund-to-support"].steps[0], ctx)
                assert tell.error is None, tell.error
                assert tell.with_["text"] == "Refund ch_3QGdWzKZ8bLq1xYv0cV7mR2s (recovered: its webhook never came)"
            else:
                assert matched == ["stripe-missed-webhooks"]
        state = await p.state("stripe-payments")
        assert state.cursor == 1764069300  # the greatest `created` of the pass
    finally:
        await p.http.aclose()
        await p.engine.dispose()


async def test_example_schedule_emits_the_body_the_page_shows(tmp_path: Path) -> None:
    from router.polling.runner import poll_once

    p = await make_poller(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'router.db'}", {"clock.yaml": example("schedule")}
    )
    try:
        source = p.ruleset.sources["weekday-morning"]
        clock = Clock(datetime(2026, 3, 27, 12, 0, tzinfo=UTC))  # Friday noon
        p.deps.clock = clock
        await poll_once(p.deps, source, p.ruleset, now=clock.now)
        report = await poll_once(p.deps, source, p.ruleset, now=datetime(2026, 3, 30, 7, 0, 5, tzinfo=UTC))
        assert len(report.new) == 1
        (row,) = await p.events("weekday-morning")
        shown = json.loads('{"tick"' + DOC.split('{"tick"', 1)[1].split("```", 1)[0])
        assert row.body == shown
        stats = render_step(p.ruleset.rules["morning-orders-report"].steps[0], {"body": row.body, "secrets": {}})
        assert stats.with_["url"] == "https://shop.example.com/api/stats?day=2026-03-30"
    finally:
        await p.http.aclose()
        await p.engine.dispose()
