"""Polling by real `router worker` processes against a loopback paginated API, on SQLite and PostgreSQL.

Each test prints its figure. Workers are started and stopped by PID; the API is a real HTTP server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from tests.conftest import write_rules
from tests.ops.test_processes import base_env, running
from tests.polling.paged_api import PagedAPI, rules

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]


def db_read(database_url: str, read: Callable[[Any], Any]) -> Any:
    """Run ``await read(conn)`` on a fresh engine in a thread of its own (the test itself is synchronous)."""

    async def run() -> Any:
        from router.records import db

        engine = db.create_engine(database_url)
        try:
            await db.migrate(engine)  # the test may look before a worker has made the tables
            async with engine.connect() as conn:
                return await read(conn)
        finally:
            await engine.dispose()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def events(database_url: str, source: str = "shop-orders") -> list[Any]:
    from router.records.models import Event

    async def read(conn: Any) -> list[Any]:
        result = await conn.execute(
            select(Event.dedupe_key, Event.status, Event.via, Event.body)
            .where(Event.source == source)
            .order_by(Event.id)
        )
        return list(result.all())

    result: list[Any] = db_read(database_url, read)
    return result


def poll_runs(database_url: str) -> list[Any]:
    from router.records.models import PollRun

    async def read(conn: Any) -> list[Any]:
        return list((await conn.execute(select(PollRun).order_by(PollRun.id))).all())

    result: list[Any] = db_read(database_url, read)
    return result


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def all_routed(database_url: str, count: int) -> Callable[[], bool]:
    def check() -> bool:
        rows = events(database_url)
        return len(rows) >= count and all(r.status in ("succeeded", "unmatched") for r in rows)

    return check


def setup(tmp_path: Path, database_url: str, redis_url: str, text: str, **env: str) -> dict[str, str]:
    write_rules(tmp_path / "rules", {"shop.yaml": text})
    return base_env(
        tmp_path,
        ROUTER_DATABASE_URL=database_url,
        ROUTER_REDIS_URL=redis_url,
        ROUTER_RULES_DIR=str(tmp_path / "rules"),
        ROUTER_SWEEP_INTERVAL="2",
        ROUTER_POLL_LEASE="3",
        **env,
    )


def once_each(rows: list[Any]) -> Counter[str]:
    return Counter(r.dedupe_key for r in rows)


@pytest.mark.parametrize("crash", ["kill -9 mid-fetch", "crash after commit"])
def test_a_worker_killed_mid_poll_loses_and_doubles_nothing(
    tmp_path: Path, api_server: HTTPServer, database_url: str, redis_clean: str, crash: str
) -> None:
    api = PagedAPI.start(api_server, style="body", page_size=2, hold_page=2 if crash.startswith("kill") else None)
    api.add(6)
    env = setup(tmp_path, database_url, redis_clean, rules(api))
    first_env = env | ({"ROUTER_FAULT_CRASH_AT": "poll_committed"} if crash.startswith("crash") else {})
    with running(["worker"], first_env, tmp_path) as first:
        if crash.startswith("kill"):
            assert api.reached_hold.wait(30), "the worker never asked for page 2"
            os.kill(first.pid, signal.SIGKILL)  # the worker dies holding the lease, page 2 in flight
            api.release.set()
            first.wait(10)
            assert events(database_url) == []  # nothing was committed
        else:
            first.wait(30)  # dies at the crash point: the poll is committed, its routing never queued
            assert first.returncode == 137
            assert len(events(database_url)) == 6
    killed_at = time.monotonic()
    with running(["worker"], env, tmp_path):
        wait_for(all_routed(database_url, 6), 60, "the 6 items to be emitted and routed by the second worker")
        taken_over = time.monotonic() - killed_at
        api.add(1, start=6)
        wait_for(all_routed(database_url, 7), 30, "the new item")
        time.sleep(2.5)  # more polls: nothing more may appear
    rows = events(database_url)
    counts = once_each(rows)
    assert sorted(counts) == [f"o-{i}" for i in range(7)]
    assert set(counts.values()) == {1}, counts
    assert {r.via for r in rows} == {"poll"}
    print(f"\n{crash}: 7 items, {len(rows)} events, each once, all routed; taken over and done in {taken_over:.1f} s")


def test_two_workers_poll_a_source_one_poll_at_a_time(
    tmp_path: Path, api_server: HTTPServer, database_url: str, redis_clean: str
) -> None:
    api = PagedAPI.start(api_server, style="link", page_size=2, delay=0.4)
    api.add(6)
    env = setup(tmp_path, database_url, redis_clean, rules(api))
    with running(["worker"], env, tmp_path), running(["worker"], env, tmp_path):
        wait_for(all_routed(database_url, 6), 60, "the first poll")
        deadline = time.monotonic() + 12
        added = 6
        while time.monotonic() < deadline:
            time.sleep(2)
            api.add(1, start=added)
            added += 1
        wait_for(all_routed(database_url, added), 30, "the items added while both workers ran")
    runs = [r for r in poll_runs(database_url) if r.source == "shop-orders"]
    holders = Counter(r.holder for r in runs)
    counts = once_each(events(database_url))
    assert set(counts.values()) == {1}, counts
    assert len(counts) == added
    assert api.max_in_flight == 1, f"{api.max_in_flight} requests were in flight at once"
    assert len(runs) >= 4
    print(
        f"\ntwo workers: {len(runs)} polls ({', '.join(f'{n} by {h}' for h, n in holders.items())}), "
        f"at most {api.max_in_flight} request in flight; {added} items, each emitted once"
    )


def test_a_429_with_retry_after_is_honoured_by_the_worker(
    tmp_path: Path, api_server: HTTPServer, database_url: str, redis_clean: str
) -> None:
    api = PagedAPI.start(api_server, style="body", page_size=2)
    api.add(6)
    api.plan = {1: (429, "4")}
    env = setup(tmp_path, database_url, redis_clean, rules(api))  # every: 1s
    with running(["worker"], env, tmp_path):
        wait_for(all_routed(database_url, 6), 60, "the items after the 429")
    gap = api.requests[1].at - api.requests[0].at
    assert api.requests[0].status == 429
    assert gap >= 4.0, f"asked again {gap:.2f} s after a 429 with Retry-After: 4"
    runs = poll_runs(database_url)
    assert runs[0].outcome == "failed"
    assert "429" in runs[0].error
    assert set(once_each(events(database_url)).values()) == {1}
    print(f"\n429 with Retry-After: 4 (polling every 1 s): next request {gap:.2f} s later; 6 events, each once")


def test_a_schedule_fires_on_its_ticks_in_a_worker(tmp_path: Path, database_url: str, redis_clean: str) -> None:
    text = """
sources:
  - id: heartbeat
    schedule: {every: 2s}
rules:
  - id: beat
    source: heartbeat
    steps:
      - {id: note, action: http, when: "`false`", with: {url: "http://127.0.0.1:9/never"}}
"""
    env = setup(tmp_path, database_url, redis_clean, text)
    with running(["worker"], env, tmp_path):
        wait_for(lambda: len(events(database_url, "heartbeat")) >= 4, 30, "4 ticks")
    rows = events(database_url, "heartbeat")
    ticks = [r.body["tick"] for r in rows]
    from datetime import datetime

    moments = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in ticks]
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(moments)}
    assert gaps == {2.0}, ticks
    assert all(m.microsecond == 0 and m.second % 2 == 0 for m in moments), ticks  # on whole multiples of 2 s
    assert len(set(ticks)) == len(ticks)
    assert {r.via for r in rows} == {"schedule"}
    print(f"\nschedule every 2s in a worker: {len(rows)} events, ticks {ticks[0]} … {ticks[-1]}, 2 s apart, none twice")
