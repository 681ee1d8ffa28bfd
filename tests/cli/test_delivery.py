"""`router dead-letters`, `retry`, `retry-bulk` and `replay` against the same database and Redis as a running router."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner, Result
from pytest_httpserver import HTTPServer

from router.cli.commands import main
from tests.conftest import RouterFactory


async def cli(args: list[str], input: str | None = None) -> Result:
    """The command in a thread: it runs its own event loop, as it does from a shell."""
    return await asyncio.to_thread(CliRunner().invoke, main, args, input=input)


def rules(url: str) -> dict[str, str]:
    step = {"id": "call", "action": "http", "with": {"url": url}}
    return {
        "r.yaml": json.dumps({"sources": [{"id": "shop"}], "rules": [{"id": "r", "source": "shop", "steps": [step]}]})
    }


async def test_dead_letters_then_retry_and_replay_from_the_shell(
    router_factory: RouterFactory, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpserver.expect_ordered_request("/x").respond_with_data("down", status=503)
    httpserver.expect_ordered_request("/x").respond_with_data("down", status=503)
    httpserver.expect_request("/x").respond_with_data("ok")
    async with router_factory(rules(httpserver.url_for("/x"))) as r:
        for key in ("database_url", "redis_url", "rules_dir", "egress_allow", "retry_schedule"):
            monkeypatch.setenv(f"ROUTER_{key.upper()}", str(getattr(r.settings, key)))
        first = (await r.hook("shop", {"n": 1})).json()["event_id"]
        second = (await r.hook("shop", {"n": 2})).json()["event_id"]
        dead = [await r.wait_event(e) for e in (first, second)]
        listed = await cli(["dead-letters", "--rule", "r", "--status", "dead"])
        assert listed.exit_code == 0, listed.output
        letters = json.loads(listed.stdout)
        one = await cli(["retry", dead[0]["runs"][0]["id"]])
        assert one.exit_code == 0, one.output
        assert (await r.wait_event(first))["status"] == "succeeded"
        declined = await cli(["retry-bulk", "--rule", "r"], input="n\n")
        bulk = await cli(["retry-bulk", "--rule", "r", "--yes"])
        assert bulk.exit_code == 0, bulk.output
        assert (await r.wait_event(second))["status"] == "succeeded"
        replayed = await cli(["replay", first])
        missing = await cli(["retry", "NOPE"])
    assert sorted(letter["event_id"] for letter in letters) == sorted([first, second])
    assert all(letter["attempts"][0]["response_status"] == 503 for letter in letters)
    assert declined.exit_code == 1
    assert "1 run(s) of 1 event(s)" in declined.output
    assert "nothing retried" in declined.output
    assert json.loads(bulk.stdout[bulk.stdout.index("{") :])["retried"] == 1
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(replayed.stdout)["skipped_sends"] == 1
    assert missing.exit_code == 1
    assert "no run 'NOPE'" in missing.output
    assert len(httpserver.log) == 4  # two failures, two successful retries; the replay sent nothing again
