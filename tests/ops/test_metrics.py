"""Prometheus metrics: `GET /metrics` counts exactly what was sent, per outcome, with bounded labels; the
gauges come from the database; `router serve --workers 2` sums its processes and a worker has its own port."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from router.metrics import sample
from tests.conftest import RouterFactory, eventually, free_port
from tests.ops.test_processes import base_env, running

pytestmark = pytest.mark.timeout(120)


def rules(sink: str) -> dict[str, str]:
    return {
        "shop.yaml": f"""
        sources:
          - id: shop
            verify: {{scheme: token, header: x-token, secret: "s3cret-token"}}
            dedupe: body.order
        rules:
          - id: order-to-crm
            source: shop
            steps:
              - id: post
                action: http
                with:
                  url: "{sink}/crm"
                  json: {{order: "{{{{ body.order }}}}"}}
          - id: flaky
            source: shop
            filter: body.flaky == `true`
            steps:
              - id: call
                action: http
                with: {{url: "{sink}/down"}}
        """
    }


async def scrape(r: Any) -> str:
    response = await r.client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    text: str = response.text
    return text


def delta(before: str, after: str, name: str, **labels: str) -> float:
    return sample(after, name, labels) - sample(before, name, labels)


async def test_metrics_count_exactly_what_was_sent(router_factory: RouterFactory, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/crm").respond_with_data("ok")
    httpserver.expect_request("/down").respond_with_data("no", status=503)
    good = {"x-token": "s3cret-token"}
    async with router_factory(rules(httpserver.url_for("").rstrip("/"))) as r:
        before = await scrape(r)
        ids = []
        for n in range(5):
            response = await r.hook("shop", {"order": f"A-{n}"}, headers=good)
            assert response.status_code == 202
            ids.append(response.json()["event_id"])
        assert (await r.hook("shop", {"order": "A-0"}, headers=good)).status_code == 200  # a repeat
        assert (await r.hook("shop", {"order": "B"}, headers={"x-token": "wrong"})).status_code == 401
        assert (await r.hook("nowhere", {"order": "C"})).status_code == 404
        flaky = await r.hook("shop", {"order": "F", "flaky": True}, headers=good)
        ids.append(flaky.json()["event_id"])
        for event_id in ids:
            await r.wait_event(event_id)
        after = await scrape(r)

    assert delta(before, after, "router_events_received_total", source="shop", outcome="accepted") == 6
    assert delta(before, after, "router_events_received_total", source="shop", outcome="duplicate") == 1
    assert delta(before, after, "router_events_received_total", source="shop", outcome="rejected") == 1
    assert delta(before, after, "router_events_received_total", source="_unknown", outcome="rejected") == 1
    assert delta(before, after, "router_events_received_total", source="nowhere") == 0  # no label per bad path
    assert delta(before, after, "router_ingest_seconds_count") == 9
    ok = {"rule": "order-to-crm", "step": "post", "action": "http", "outcome": "succeeded"}
    assert delta(before, after, "router_step_attempts_total", **ok) == 6
    assert delta(before, after, "router_step_attempts_total", rule="flaky", outcome="failed") == 1
    assert delta(before, after, "router_delivery_seconds_count", action="http") == 6
    assert sample(after, "router_rules_loaded") == 2
    assert sample(after, "router_queue_depth") == 0
    assert sample(after, "router_queue_oldest_seconds") == 0
    # bounded labels: no event id, no URL, no path of an unknown source anywhere
    assert not any(event_id in after for event_id in ids)
    assert "/crm" not in after
    assert "/down" not in after


async def test_queue_and_dead_letter_gauges_come_from_the_database(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/crm").respond_with_data("ok")
    httpserver.expect_request("/down").respond_with_data("no", status=503)
    good = {"x-token": "s3cret-token"}
    async with router_factory(rules(httpserver.url_for("").rstrip("/")), worker=False) as r:
        for n in range(3):
            assert (await r.hook("shop", {"order": f"Q-{n}"}, headers=good)).status_code == 202
        text = await scrape(r)
        assert sample(text, "router_queue_depth") == 3  # no worker: stored, not routed
        assert sample(text, "router_queue_oldest_seconds") > 0
        assert sample(text, "router_runs_dead") == 0
    async with router_factory(
        rules(httpserver.url_for("").rstrip("/")), database_url=r.settings.database_url, retry_schedule="100ms"
    ) as r2:

        async def drained() -> bool:
            return sample(await scrape(r2), "router_queue_depth") == 0

        await eventually(drained, timeout=20, what="the queue to drain")
        response = await r2.hook("shop", {"order": "D", "flaky": True}, headers=good)
        await r2.wait_event(response.json()["event_id"])
        text = await scrape(r2)
        assert sample(text, "router_runs_dead") == 1  # 2 attempts (1 retry), then dead
        assert sample(text, "router_step_attempts_total", {"rule": "flaky", "outcome": "retrying"}) >= 1


# -- real processes: two web processes sum their counters; the worker has its own port ------------------


def metrics_rules(folder: Path, sink: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "m.yaml").write_text(
        json.dumps(
            {
                "sources": [{"id": "m", "verify": {"scheme": "none"}}],
                "rules": [
                    {"id": "fan", "source": "m", "steps": [{"id": "out", "action": "http", "with": {"url": sink}}]}
                ],
            }
        )
    )
    return folder


def scrape_url(url: str) -> str:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return response.text


@pytest.mark.timeout(180)
def test_serve_with_two_processes_and_a_worker_port_count_exactly(
    tmp_path: Path, redis_clean: str, httpserver: HTTPServer
) -> None:
    delivered: list[str] = []

    def sink(request: Request) -> Response:
        delivered.append(request.headers["idempotency-key"])
        return Response("ok")

    httpserver.expect_request("/m").respond_with_handler(sink)
    port, metrics_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    folder = metrics_rules(tmp_path / "rules", httpserver.url_for("/m"))
    env = base_env(tmp_path, ROUTER_REDIS_URL=redis_clean, ROUTER_RULES_DIR=str(folder))
    shared = tmp_path / "prometheus"  # given: the CLI must empty it of a previous run's files
    shared.mkdir()
    (shared / "counter_1.db").write_bytes(b"stale and unreadable")
    env["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
    worker_url = f"http://127.0.0.1:{metrics_port}/metrics"
    sent = 60
    with (
        running(["serve", "--port", str(port), "--workers", "2"], env, tmp_path, ready_url=f"{url}/health"),
        running(["worker", "--metrics-port", str(metrics_port)], env, tmp_path, ready_url=worker_url),
    ):
        web_before = scrape_url(f"{url}/metrics")
        worker_before = scrape_url(worker_url)
        for n in range(sent):  # a new connection each: the kernel spreads them over both processes
            assert httpx.post(f"{url}/hooks/m", json={"n": n}).status_code == 202
        assert httpx.post(f"{url}/hooks/unknown", json={}).status_code == 404
        deadline = time.monotonic() + 60
        while len(delivered) < sent and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the worker counts a step once its outcome is committed, after the sink answered
        # each scrape is answered by either process, and each must show both processes' counts
        webs = [scrape_url(f"{url}/metrics") for _ in range(6)]
        worker_after = scrape_url(worker_url)
        per_process = accepted_per_process(shared)
    assert len(delivered) == sent
    assert len(per_process) == 2, per_process  # both web processes took webhooks...
    assert sum(per_process.values()) == sent  # ...and every scrape above showed their sum
    for text in webs:
        assert delta(web_before, text, "router_events_received_total", source="m", outcome="accepted") == sent
        assert delta(web_before, text, "router_events_received_total", source="_unknown", outcome="rejected") == 1
        assert delta(web_before, text, "router_ingest_seconds_count") == sent + 1
        assert sample(text, "router_queue_depth") == 0
    assert delta(worker_before, worker_after, "router_step_attempts_total", rule="fan", outcome="succeeded") == sent
    assert delta(worker_before, worker_after, "router_delivery_seconds_count", action="http") == sent
    assert sample(worker_after, "router_rules_loaded") == 1
    assert "router_events_received_total" not in re.sub(r"#.*\n", "", worker_after)  # the worker takes no webhooks


def accepted_per_process(folder: Path) -> dict[str, float]:
    """Each web process's own count of accepted webhooks, read from its file alone."""
    import shutil
    import tempfile

    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    out: dict[str, float] = {}
    for file in sorted(folder.glob("counter_*.db")):
        with tempfile.TemporaryDirectory() as alone:
            shutil.copy(file, alone)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=alone)  # type: ignore[no-untyped-call]
            text = generate_latest(registry).decode()
        count = sample(text, "router_events_received_total", {"outcome": "accepted"})
        if count:
            out[file.stem] = count
    return out


def test_worker_check_fails_without_a_worker_and_passes_with_one(tmp_path: Path, redis_clean: str) -> None:
    env = base_env(tmp_path, ROUTER_REDIS_URL=redis_clean, ROUTER_HEARTBEAT_TIMEOUT="3")
    (tmp_path / "rules").mkdir()
    env["ROUTER_RULES_DIR"] = str(tmp_path / "rules")

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "router", "worker", "--check"], env=env, capture_output=True, text=True, timeout=30
        )

    alone = check()
    assert alone.returncode == 1
    assert "no worker on host" in alone.stderr
    assert "ROUTER_HEARTBEAT_TIMEOUT" in alone.stderr
    with running(["worker"], env, tmp_path) as proc:
        deadline = time.monotonic() + 30
        while (result := check()).returncode != 0:
            assert proc.poll() is None, result.stderr
            assert time.monotonic() < deadline, result.stderr
            time.sleep(0.3)
        assert result.stdout.startswith("ok: worker ")
    # a stopped worker removes its heartbeat at once
    after = check()
    assert after.returncode == 1, after.stdout


def test_the_grafana_dashboard_uses_only_metrics_that_exist() -> None:
    """Every series the dashboard queries is one the router exports, and monitoring.md lists each."""
    from router import metrics
    from tests.conftest import REPO

    suffix = {"counter": "_total", "histogram": "_bucket", "gauge": ""}
    families = [*metrics.families(), *metrics.Gauges(metrics.QueueFigures(0, 0, 0), 0, {}).collect()]
    exported = {f.name + suffix[f.type] for f in families if f.name.startswith("router_")}
    assert len(exported) == 10, exported
    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"router_\w+", expr)}
    assert used == exported, used ^ exported
    monitoring = (REPO / "docs" / "monitoring.md").read_text()
    for name in exported:
        assert f"`{name.removesuffix('_bucket')}`" in monitoring, f"docs/monitoring.md does not list {name}"
