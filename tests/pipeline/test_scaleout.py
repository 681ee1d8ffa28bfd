"""Scale-out, black box: two `router serve` and two `router worker` processes on PostgreSQL and Redis take
2,000 webhooks through both web processes while a worker is killed (-9) and restarted; every event is
delivered, each under one idempotency key (bench/scaleout.py runs the scenario; this prints its figure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import scaleout

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(420)]


def test_two_web_two_workers_a_worker_killed_none_lost_none_twice(
    tmp_path: Path, redis_clean: str, fresh_postgres: str
) -> None:
    result = scaleout.scenario(tmp_path, fresh_postgres, redis_clean, events=2000, rate=200)
    line = result.line()
    print(line)
    assert result.accepted == 2000, line
    assert result.kills == 1, line
    assert len(result.by_web) == 2, line  # both web processes took webhooks
    assert result.lost == [], f"lost {len(result.lost)}: {result.lost[:10]}"
    assert result.ids_with_two_keys == [], f"delivered under two keys: {result.ids_with_two_keys[:10]}"
    assert result.delivered_ids == result.keys == 2000, line  # distinct idempotency keys = events
    assert result.metrics_accepted == 2000, line  # the counters of both webs add up to what was sent
