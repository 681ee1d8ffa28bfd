"""Polling a paginated API on loopback (a real HTTP server) into events, on SQLite and PostgreSQL.

Each test drives ``router.polling.runner.poll_once`` (what the workers' job runs) against the real
database and the real outgoing client (``router.pipeline.outbound.send``, through the egress guard).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from router.pipeline.outbound import create_client
from router.polling.runner import PollDeps, PollReport, poll_once
from router.records import db
from router.records.models import Event, PollRun, PollState
from router.rules.compiled import RuleSet
from router.rules.ruleset import load_ruleset
from router.settings import Settings, load_settings
from tests.conftest import write_rules
from tests.polling.paged_api import PagedAPI, rules

pytestmark = pytest.mark.postgres


class Poller:
    """A rule set, a database and the outgoing client, as a worker has them; ``poll()`` runs one poll."""

    def __init__(self, settings: Settings, ruleset: RuleSet, engine: Any, http: Any) -> None:
        self.settings, self.ruleset, self.engine, self.http = settings, ruleset, engine, http
        self.deps = PollDeps(engine=engine, settings=settings, http=http, holder="test-worker")

    async def poll(self, source: str = "shop-orders", **kwargs: Any) -> PollReport:
        kwargs.setdefault("force", True)
        return await poll_once(self.deps, self.ruleset.sources[source], self.ruleset, **kwargs)

    async def events(self, source: str = "shop-orders") -> list[Any]:
        async with self.engine.connect() as conn:
            result = await conn.execute(
                select(Event.dedupe_key, Event.body, Event.via, Event.headers, Event.query)
                .where(Event.source == source)
                .order_by(Event.id)
            )
            return list(result.all())

    async def state(self, source: str = "shop-orders") -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(PollState).where(PollState.source == source))).one()


async def make_poller(
    tmp_path: Path, database_url: str, files: dict[str, str], env: dict[str, str] | None = None, **settings: Any
) -> Poller:
    folder = write_rules(tmp_path / "rules", files)
    values = {"database_url": database_url, "rules_dir": folder, "egress_allow": "127.0.0.0/8"} | settings
    s = load_settings(**values)
    engine = db.create_engine(s.database_url)
    await db.migrate(engine)
    return Poller(s, load_ruleset(folder, env=env or {}), engine, create_client(s))


@pytest.fixture
async def poller_factory(tmp_path: Path, database_url: str) -> AsyncIterator[Any]:
    made: list[Poller] = []

    async def make(files: dict[str, str], **settings: Any) -> Poller:
        p = await make_poller(tmp_path, database_url, files, **settings)
        made.append(p)
        return p

    yield make
    for p in made:
        await p.http.aclose()
        await p.engine.dispose()


def keys(rows: list[Any]) -> list[str]:
    return [r.dedupe_key for r in rows]


@pytest.mark.parametrize("style", ["body", "link", "stripe"])
async def test_three_pages_each_item_emitted_once_then_a_new_item_once(
    api_server: HTTPServer, poller_factory: Any, style: str
) -> None:
    api = PagedAPI.start(api_server, style=style, page_size=2)
    api.add(6)
    p = await poller_factory({"shop.yaml": rules(api)})

    first = await p.poll()
    assert (first.outcome, first.pages, first.items, len(first.new)) == ("ok", 3, 6, 6), first
    assert keys(await p.events()) == [f"o-{i}" for i in range(6)]
    state = await p.state()
    assert state.cursor == "2026-12-01T10:00:05Z"  # the greatest updated_at of the pass
    print(f"\n[{style}] 3 pages, 6 items: {len(first.new)} events emitted, each once")

    again = await p.poll()  # nothing new: the page after the cursor holds only the item at the cursor
    assert again.new == [], again
    assert api.requests[-1].query["updated_since"] == "2026-12-01T10:00:05Z"

    api.add(1, start=6)
    third = await p.poll()
    assert len(third.new) == 1, third
    rows = await p.events()
    assert keys(rows) == [f"o-{i}" for i in range(7)]
    assert all(r.via == "poll" for r in rows)
    assert rows[-1].body == {"id": "o-6", "updated_at": "2026-12-01T10:00:06Z", "total": 16}
    print(f"[{style}] a new item at the next poll: emitted once; {len(rows)} events for 7 items")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


async def test_an_unchanged_first_page_costs_one_304_with_if_none_match(
    api_server: HTTPServer, poller_factory: Any
) -> None:
    api = PagedAPI.start(api_server, style="link", page_size=10)
    api.add(3)
    # no cursor: the first request is the same every time, so its ETag is sent back
    p = await poller_factory({"shop.yaml": rules(api, cursor="", query="", etag="true")})
    first = await p.poll()
    assert len(first.new) == 3
    assert "if-none-match" not in api.requests[0].headers
    second = await p.poll()
    assert second.outcome == "not_modified", second
    assert api.requests[-1].headers["if-none-match"] == (await p.state()).etag
    assert api.requests[-1].status == 304
    assert second.items == 0
    assert second.new == []
    api.add(1, start=3)  # the page changes: its ETag no longer matches, the new item comes
    third = await p.poll()
    assert (third.outcome, len(third.new)) == ("ok", 1)
    print(f"\nETag: unchanged poll answered {api.requests[1].status} with If-None-Match; changed page: 1 new event")


async def test_429_retry_after_is_honoured_and_the_pass_goes_on_where_it_stopped(
    api_server: HTTPServer, poller_factory: Any
) -> None:
    api = PagedAPI.start(api_server, style="body", page_size=2)
    api.add(6)
    api.plan = {2: (429, "30")}  # the second request (page 2) is rate limited for 30 s
    p = await poller_factory({"shop.yaml": rules(api, every="5s")})
    clock = Clock(datetime(2026, 12, 7, 12, 0, tzinfo=UTC))
    p.deps.clock = clock
    first = await p.poll(now=clock.now, force=False)
    assert first.outcome == "failed", first
    assert "429" in (first.error or "")
    assert len(first.new) == 2  # page 1 is kept
    state = await p.state()
    assert state.next_poll_at >= clock.now + timedelta(seconds=30)  # not the 5 s interval: Retry-After
    assert state.resume == {"url": f"{api.url}?updated_since=1970-01-01T00%3A00%3A00Z&offset=2", "page": 1}
    assert state.cursor is None  # the pass is not finished: the cursor has not moved
    served = len(api.requests)
    for wait in (5, 10, 29):  # every due check before Retry-After has passed sends nothing
        early = await p.poll(now=clock.now + timedelta(seconds=wait), force=False)
        assert early.outcome == "not_due"
    assert len(api.requests) == served
    later = await p.poll(now=clock.advance(30.5), force=False)
    assert (later.outcome, later.pages, len(later.new)) == ("ok", 2, 4), later
    assert api.requests[served].query.get("offset") == "2"  # went on at page 2, not from the start
    assert keys(await p.events()) == [f"o-{i}" for i in range(6)]
    assert (await p.state()).cursor == "2026-12-01T10:00:05Z"
    print("\n429 Retry-After: 30: no request for 30 s (test clock), then the pass went on: 6 events, each once")


async def test_max_pages_stops_a_poll_and_the_next_goes_on_cursor_moves_at_the_end(
    api_server: HTTPServer, poller_factory: Any
) -> None:
    api = PagedAPI.start(api_server, style="stripe", page_size=2)
    api.add(6)
    p = await poller_factory({"shop.yaml": rules(api, max_pages="2")})
    first = await p.poll()
    assert (first.outcome, first.pages, len(first.new)) == ("partial", 2, 4)
    state = await p.state()
    assert state.cursor is None
    assert state.resume == {"query": {"updated_since": "1970-01-01T00:00:00Z", "starting_after": "o-3"}, "page": 2}
    second = await p.poll()
    assert (second.outcome, second.pages, len(second.new)) == ("ok", 1, 2)
    state = await p.state()
    assert state.cursor == "2026-12-01T10:00:05Z"
    assert state.resume is None
    assert keys(await p.events()) == [f"o-{i}" for i in range(6)]


async def test_failing_polls_back_off_exponentially_and_show_the_error(
    api_server: HTTPServer, poller_factory: Any
) -> None:
    api = PagedAPI.start(api_server, style="body")
    api.add(1)
    api.plan = {1: (503, None), 2: (503, None), 3: (500, None), 4: (401, None)}
    p = await poller_factory({"shop.yaml": rules(api, every="10s")})
    clock = Clock(datetime(2026, 12, 7, 12, 0, tzinfo=UTC))
    p.deps.clock = clock
    waits = []
    for _ in range(4):
        report = await p.poll(now=clock.now, force=False)
        assert report.outcome == "failed"
        state = await p.state()
        waits.append((state.next_poll_at - clock.now).total_seconds())
        clock.now = state.next_poll_at
    assert waits == [10, 20, 40, 80], waits
    assert state.failures == 4
    assert "answered 401" in state.last_error
    ok = await p.poll(now=clock.now, force=False)
    assert (ok.outcome, len(ok.new)) == ("ok", 1)
    state = await p.state()
    assert (state.failures, state.last_error) == (0, None)
    assert (state.next_poll_at - clock.now).total_seconds() == 10
    async with p.engine.connect() as conn:
        runs = (await conn.execute(select(PollRun.outcome, PollRun.error).order_by(PollRun.id))).all()
    assert [r.outcome for r in runs] == ["failed"] * 4 + ["ok"]
    assert "answered 503" in runs[0].error
    print(f"\nbackoff after failed polls (every: 10s): {', '.join(f'{w:g}s' for w in waits)}")


async def test_two_pollers_one_poll_at_a_time_and_a_taken_over_poll_commits_nothing(
    api_server: HTTPServer, poller_factory: Any
) -> None:
    api = PagedAPI.start(api_server, style="body", page_size=2, hold_page=2)
    api.add(4)
    files = {"shop.yaml": rules(api)}
    a = await poller_factory(files, poll_lease=5)
    b = await poller_factory(files, poll_lease=5)
    a.deps.holder, b.deps.holder = "worker-a", "worker-b"
    task = asyncio.create_task(a.poll())
    assert await asyncio.to_thread(api.reached_hold.wait, 10)  # a holds the lease, waiting on page 2
    busy = await b.poll()
    assert busy.outcome == "busy"
    assert (await a.state()).lease_holder == "worker-a"
    # a freezes past its lease (no renewal reaches the database): b takes the source over
    state = await a.state()
    late = state.lease_until + timedelta(seconds=1)
    taken = await b.poll(now=late)
    assert (taken.outcome, len(taken.new)) == ("ok", 4), taken
    api.release.set()
    stale = await task
    assert stale.outcome == "lease_lost", stale
    assert keys(await a.events()) == ["o-0", "o-1", "o-2", "o-3"]  # a's pages were not committed a second time
    assert api.max_in_flight == 2  # b polled while a was frozen: only the lease's expiry allowed it
    print(
        "\nlease: a second poller found the source busy; after the lease expired it took over; "
        "the frozen poll committed nothing (4 events, each once)"
    )


async def test_secrets_in_the_request_are_masked_in_what_is_stored(
    api_server: HTTPServer, poller_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = PagedAPI.start(api_server, style="link", page_size=2)
    api.add(3)
    text = rules(
        api, query='{updated_since: "{{ cursor | default(\'1970\') }}", key: "{{ secrets.SHOP_KEY }}"}', max_pages="1"
    )
    p = await poller_factory({"shop.yaml": text})
    p.ruleset = load_ruleset(p.settings.rules_dir, env={"ROUTER_SECRET_SHOP_KEY": "sk-live-0123456789"})
    report = await p.poll()
    assert api.requests[0].query["key"] == "sk-live-0123456789"  # sent
    rows = await p.events()
    assert rows[0].query["key"] == "[secret:SHOP_KEY]"
    state = await p.state()
    assert "sk-live" not in str(state.resume)
    assert "[secret:SHOP_KEY]" in state.resume["url"]
    second = await p.poll()  # the continuation gets the secret back when it is used
    assert api.requests[-1].query["key"] == "sk-live-0123456789"
    assert len(report.new) + len(second.new) == 3


@pytest.mark.parametrize("catch_up", ["latest", "all", "none"])
async def test_a_schedule_fires_once_per_tick_on_a_controlled_clock(poller_factory: Any, catch_up: str) -> None:
    files = {
        "clock.yaml": f"""
            sources:
              - id: weekday-morning
                schedule: {{cron: "0 9 * * 1-5", timezone: Europe/Berlin, catch_up: {catch_up}}}
            """
    }
    p = await poller_factory(files)
    clock = Clock(datetime(2026, 3, 26, 7, 0, tzinfo=UTC))  # Thursday 08:00 in Berlin (CET, UTC+1)

    async def at(moment: datetime) -> PollReport:
        clock.now = moment
        p.deps.clock = clock
        return await poll_once(p.deps, p.ruleset.sources["weekday-morning"], p.ruleset, now=moment)

    assert (await at(clock.now)).outcome == "not_due"  # first seen: the first tick is Thursday 09:00
    assert (await at(datetime(2026, 3, 26, 7, 59, 59, tzinfo=UTC))).outcome == "not_due"
    thursday = await at(datetime(2026, 3, 26, 8, 0, 1, tzinfo=UTC))  # 09:00:01 Berlin
    assert len(thursday.new) == 1
    assert (await at(datetime(2026, 3, 26, 8, 0, 30, tzinfo=UTC))).outcome == "not_due"  # no second event
    friday = await at(datetime(2026, 3, 27, 8, 0, 0, tzinfo=UTC))
    assert len(friday.new) == 1
    # the weekend passes; daylight saving starts on Sunday 29 March: Monday's 09:00 Berlin is 07:00 UTC
    assert (await at(datetime(2026, 3, 30, 6, 59, 59, tzinfo=UTC))).outcome == "not_due"
    monday = await at(datetime(2026, 3, 30, 7, 0, 0, tzinfo=UTC))
    assert len(monday.new) == 1
    # no worker from Monday 09:01 to Thursday 12:00 Berlin: Tuesday, Wednesday and Thursday 09:00 were missed
    late = await at(datetime(2026, 4, 2, 10, 0, 0, tzinfo=UTC))
    expected_late = {"latest": 1, "all": 3, "none": 0}[catch_up]
    assert len(late.new) == expected_late
    rows = await p.events("weekday-morning")
    ticks = [r.body["tick"] for r in rows]
    assert ticks[:3] == ["2026-03-26T08:00:00Z", "2026-03-27T08:00:00Z", "2026-03-30T07:00:00Z"]
    assert rows[2].body["local"] == "2026-03-30T09:00:00+02:00"
    assert all(r.via == "schedule" for r in rows)
    if catch_up == "latest":
        assert rows[-1].body["tick"] == "2026-04-02T07:00:00Z"
        assert rows[-1].body["missed"] == 2
    elif catch_up == "all":
        assert ticks[3:] == ["2026-03-31T07:00:00Z", "2026-04-01T07:00:00Z", "2026-04-02T07:00:00Z"]
    state = await p.state("weekday-morning")
    assert state.next_poll_at == datetime(2026, 4, 3, 7, 0, tzinfo=UTC)
    print(f"\nschedule 0 9 * * 1-5 Europe/Berlin, catch_up {catch_up}: {len(rows)} events for ticks {ticks}")


RECONCILE = """
sources:
  - id: payments
    verify: {{scheme: none}}
    dedupe: body.id
    reconcile:
      url: "{url}"
      every: 1h
      query: {{updated_since: "{{{{ cursor | default('1970-01-01T00:00:00Z') }}}}"}}
      items: body.data
      id: id
      cursor: max_by(body.data, &updated_at).updated_at
      next: "body.has_more && {{starting_after: body.data[-1].id}}"
rules:
  - id: recovered
    source: payments
    filter: "event.via == 'reconcile'"
    steps:
      - id: tell
        action: http
        with: {{url: "{inbox}", json: {{id: "{{{{ body.id }}}}", via: "{{{{ event.via }}}}"}}}}
"""


async def test_reconcile_emits_only_the_items_whose_webhook_never_came(
    api_server: HTTPServer, router_factory: Any, database_url: str, tmp_path: Path
) -> None:
    from router.worker import create_redis

    api = PagedAPI.start(api_server, style="stripe", page_size=2)
    items = api.add(6)
    api_server.expect_request("/recovered", method="POST").respond_with_json({"ok": True})
    files = {"payments.yaml": RECONCILE.format(url=api.url, inbox=api_server.url_for("/recovered"))}
    async with router_factory(files, database_url=database_url) as r:
        delivered = [items[i] for i in (0, 2, 3, 5)]  # the provider delivered these webhooks; 1 and 4 were lost
        for item in delivered:
            response = await r.hook("payments", item)
            assert response.status_code == 202, response.text
        p = await make_poller(tmp_path, database_url, {"payments.yaml": files["payments.yaml"]})
        p.deps.redis = create_redis(r.settings.redis_url)
        try:
            report = await p.poll("payments")
            rows = await p.events("payments")
        finally:
            await p.deps.redis.aclose(close_connection_pool=True)
            await p.http.aclose()
            await p.engine.dispose()
        assert (report.kind, report.items, report.duplicates) == ("reconcile", 6, 4)
        assert len(report.new) == 2
        by_key = {row.dedupe_key: row.via for row in rows}
        assert by_key == {"o-0": None, "o-2": None, "o-3": None, "o-5": None, "o-1": "reconcile", "o-4": "reconcile"}
        for event_id in report.new:
            event = await r.wait_event(event_id, done=("succeeded", "failed", "unmatched"))
            assert event["via"] == "reconcile"
            assert [run["rule_id"] for run in event["runs"]] == ["recovered"]  # the rule's filter saw event.via
        late = await r.hook("payments", items[4])  # the lost webhook arrives after all: already there
        assert late.status_code == 200
        assert late.json() == {"event_id": report.new[1], "duplicate": True}
    told = sorted((json.loads(req.data) for req, _ in api_server.log if req.path == "/recovered"), key=str)
    assert told == [{"id": "o-1", "via": "reconcile"}, {"id": "o-4", "via": "reconcile"}]
    print(
        f"\nreconcile: 6 items listed, 4 webhooks received, {len(report.new)} events emitted (via reconcile); "
        "the late webhook answered duplicate"
    )
