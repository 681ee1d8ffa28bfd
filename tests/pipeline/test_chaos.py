"""Chaos proof (issue #3, item 8) on real processes, real Redis and a real database; each test prints its figure.

The scenarios live in bench/chaos.py (which runs them with larger counts); these are the CI-sized runs:
`pytest -m chaos -s`. Every process listens on 127.0.0.1 and is stopped by PID when the test ends.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import chaos

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


def assert_no_loss(f: chaos.Figures, line: str) -> None:
    print(line)
    assert f.accepted == f.events, line
    assert f.lost == [], f"lost {len(f.lost)}: {f.lost[:10]}"
    assert f.bad_keys == [], f"duplicates with another key: {f.bad_keys[:10]}"
    assert f.resent_after_recorded == [], f"recorded steps sent again: {f.resent_after_recorded[:10]}"
    assert f.open_runs == 0, f"runs left open: {f.runs}"
    assert f.unrouted == 0, "events left received/routed"


def test_kill9_random_workers_while_delivering(tmp_path: Path, redis_clean: str) -> None:
    f, line = chaos.scenario_kill9(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'router.db'}", redis_clean, events=1000, kills=20
    )
    assert_no_loss(f, line)
    assert int(line.split("kill -9: ")[1].split()[0]) >= 20


@pytest.mark.parametrize("point", ["after_commit", "after_send", "mid_chain"])
def test_crash_at_named_points(tmp_path: Path, redis_clean: str, point: str) -> None:
    f, line = chaos.scenario_point(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'router.db'}", redis_clean, point=point, events=200, crashes=3
    )
    assert_no_loss(f, line)
    assert "ONLY" not in line, line
    if point == "mid_chain":  # every crash came after a step was recorded: resuming re-sends nothing recorded
        assert f.resent_after_recorded == []


@pytest.mark.parametrize("mode", ["restart", "wiped"])
def test_redis_restarted_mid_load(tmp_path: Path, mode: str) -> None:
    f, line = chaos.scenario_redis(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'router.db'}", mode=mode, events=300)
    assert_no_loss(f, line)


@pytest.mark.skipif(chaos.Postgres.bindir() is None, reason="no PostgreSQL server binaries (initdb, pg_ctl)")
def test_database_unavailable_for_20_s(tmp_path: Path, redis_clean: str) -> None:
    f, line = chaos.scenario_dbdown(tmp_path, redis_clean, events=300, outage=20)
    extra = f.extra  # type: ignore[attr-defined]
    assert extra["ghost"] == [], "2xx answered without a stored row"
    assert extra["answers"].get(503, 0) > 0, "the outage was never seen by ingest"
    assert extra["no_retry_after"] == 0, "503 without Retry-After"
    assert extra["other_5xx"] == 0, line
    assert_no_loss(f, line)


def test_scripted_sink_schedules_dead_letters_and_replay(tmp_path: Path, redis_clean: str) -> None:
    res, line = chaos.scenario_sink(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'router.db'}", redis_clean, events=10)
    print(line)
    by_plan = res["by_plan"]
    assert by_plan["fail3"] == {"succeeded": 10}, by_plan
    assert by_plan["down"] == {"dead": 10}, by_plan
    assert by_plan["slow"] == {"succeeded": 10}, by_plan
    assert by_plan["r429"] == {"succeeded": 10}, by_plan
    assert by_plan["moved"] == {"failed": 10}, by_plan
    assert set(by_plan["gone"]) <= {"held", "failed"}, by_plan  # 410: paused destination (held) or failed
    assert res["attempts_by_plan"]["gone"] == 10, "a 410 was retried"
    assert res["attempts_by_plan"]["moved"] == 10, "a 301 was retried"
    assert res["off_schedule"] == [], res["off_schedule"][:10]
    assert res["cv"] > 0.03, "retry delays are not spread by jitter"
    assert min(res["r429_gaps"]) >= 3.0, res["r429_gaps"]
    assert res["confirmed"] == 202
    assert res["delivered"] == res["down_keys"], "replay after healing did not deliver every dead letter"
    assert res["replayed"] == {"succeeded": 10}
