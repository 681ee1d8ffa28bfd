"""`router poll SOURCE --once [--dry-run]` against a loopback paginated API, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner
from pytest_httpserver import HTTPServer

from router.cli.commands import main
from tests.conftest import write_rules
from tests.polling.paged_api import PagedAPI, rules
from tests.polling.test_workers import db_read, events


def poll_states(database_url: str) -> list[object]:
    from sqlalchemy import select

    from router.records.models import PollState

    async def read(conn: object) -> list[object]:
        return list((await conn.execute(select(PollState.source))).all())  # type: ignore[attr-defined]

    result: list[object] = db_read(database_url, read)
    return result


pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def own_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`router poll` sets up logging on the runner's stderr: undo it after, and start without handlers an
    earlier test left on streams that are closed now."""
    monkeypatch.setattr(logging.root, "handlers", [])
    yield
    structlog.reset_defaults()


@pytest.fixture
def env(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("ROUTER_REDIS_URL", "ROUTER_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROUTER_DATABASE_URL", database_url)
    monkeypatch.setenv("ROUTER_RULES_DIR", str(tmp_path / "rules"))
    monkeypatch.setenv("ROUTER_EGRESS_ALLOW", "127.0.0.0/8")
    return tmp_path / "rules"


HOOKS = """
sources:
  - id: github
    verify: {scheme: none}
  - id: nightly
    schedule: {cron: "0 2 * * *"}
"""


def test_dry_run_prints_what_would_be_emitted_and_stores_nothing(
    api_server: HTTPServer, env: Path, database_url: str
) -> None:
    api = PagedAPI.start(api_server, style="link", page_size=2)
    api.add(5)
    write_rules(env, {"shop.yaml": rules(api), "hooks.yaml": HOOKS})
    runner = CliRunner()
    dry = runner.invoke(main, ["poll", "shop-orders", "--once", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    head = "shop-orders (poll, dry run: nothing stored): 3 page(s), 5 item(s): 5 would be emitted, 0 already stored"
    assert head in dry.output
    assert '  + o-0  {"id":"o-0","updated_at":"2026-12-01T10:00:00Z","total":10}' in dry.output
    assert 'cursor after this poll: "2026-12-01T10:00:04Z"' in dry.output
    assert events(database_url) == []
    assert poll_states(database_url) == []  # not even the source's state row

    once = runner.invoke(main, ["poll", "shop-orders", "--once"])
    assert once.exit_code == 0, once.output
    assert "3 page(s), 5 item(s), 5 new event(s), 0 already stored (ok)" in once.output
    assert "ROUTER_REDIS_URL is not set: the events are stored; a worker routes them" in once.output
    assert len(events(database_url)) == 5

    api.add(1, start=5)
    dry = runner.invoke(main, ["poll", "shop-orders", "--once", "--dry-run", "--format", "json"])
    report = json.loads(dry.stdout)  # the report alone on stdout; log lines go to stderr
    assert [w["id"] for w in report["would_emit"]] == ["o-5"]
    assert report["already_stored"] == 1  # o-4 is at the cursor, so listed again, and already stored
    again = runner.invoke(main, ["poll", "shop-orders", "--once"])
    assert "1 new event(s), 1 already stored" in again.output
    assert len(events(database_url)) == 6


def test_refusals_are_one_clear_line(api_server: HTTPServer, env: Path) -> None:
    api = PagedAPI.start(api_server, style="body")
    api.plan = {1: (503, None)}
    write_rules(env, {"shop.yaml": rules(api), "hooks.yaml": HOOKS})
    runner = CliRunner()
    cases = {
        ("poll", "nope", "--once"): "no source 'nope'; sources that poll or fire on a schedule: nightly, shop-orders",
        ("poll", "github", "--once"): "source 'github' takes webhooks; it has no poll, reconcile or schedule",
        ("poll", "nightly", "--once", "--dry-run"): "source 'nightly' is a schedule: there is nothing to fetch",
        ("poll", "shop-orders", "--dry-run"): "--dry-run polls once: add --once",
    }
    for args, message in cases.items():
        result = runner.invoke(main, list(args))
        assert result.exit_code in (1, 2), result.output
        assert message in result.output
        assert "Traceback" not in result.output
    failed = runner.invoke(main, ["poll", "shop-orders", "--once"])
    assert failed.exit_code == 1
    assert f"error: GET {api.url}?updated_since=1970-01-01T00:00:00Z answered 503" in failed.output
    tick = runner.invoke(main, ["poll", "nightly", "--once"])
    assert tick.exit_code == 0
    assert "nightly (schedule): no tick due" in tick.output
