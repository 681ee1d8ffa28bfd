"""Scale-out on PostgreSQL and Redis: two `router serve` and two `router worker` processes; webhooks sent
through both web processes while one worker is killed (-9) and restarted. Black box: HTTP in, a loopback
sink out (bench/chaos.py's sink, which logs each request it answered with its Idempotency-Key).

Proves: every accepted event delivered (none lost) and one idempotency key per event (no event delivered
under two keys: a re-delivery after a kill carries the same key, so the receiver can drop it). Prints the
figure line; tests/pipeline/test_scaleout.py runs it at 2,000 events.

    python bench/scaleout.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/router_bench \\
        --redis-url redis://127.0.0.1:6379/11 --events 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _common as c  # noqa: E402  (bench/_common.py)


@dataclass
class Result:
    events: int
    accepted: int = 0
    by_web: Counter[str] = field(default_factory=Counter)
    delivered_ids: int = 0
    keys: int = 0
    receipts: int = 0
    redelivered_same_key: int = 0
    ids_with_two_keys: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    kills: int = 0
    drain_seconds: float = 0.0
    ingest_ms: list[float] = field(default_factory=list)
    metrics_accepted: float = 0.0

    def line(self) -> str:
        p50 = c.percentile(self.ingest_ms, 50)
        p99 = c.percentile(self.ingest_ms, 99)
        webs = ", ".join(f"{k} {v}" for k, v in sorted(self.by_web.items()))
        return (
            f"scale-out (2 web + 2 workers, PostgreSQL, Redis): {self.events} sent, {self.accepted} accepted "
            f"({webs}); kill -9 of a worker mid-load: {self.kills}, restarted; delivered {self.delivered_ids} "
            f"distinct events under {self.keys} distinct idempotency keys ({self.receipts} requests answered, "
            f"{self.redelivered_same_key} re-sent with the same key after the kill); lost {len(self.lost)}; "
            f"events under two keys {len(self.ids_with_two_keys)}; drained {self.drain_seconds:.1f} s after the "
            f"last send; ingest p50 {p50:.1f} ms, p99 {p99:.1f} ms; /metrics accepted (both webs) "
            f"{self.metrics_accepted:.0f}"
        )


RULES = """
sources:
  - id: scale
    verify: {scheme: none}
    dedupe: body.id          # a sender's retry of the same webhook is stored once
rules:
  - id: forward
    source: scale
    steps:
      - id: deliver
        action: http
        with:
          url: "SINK/ok/deliver"
          json: {id: "{{ body.id }}"}
"""


def receipts(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


async def send(webs: list[str], ids: list[str], rate: float, result: Result, on_progress: Any) -> None:
    """POST each id once at ``rate``/s, alternating web processes; a failed POST is sent again (same id)."""
    sem = asyncio.Semaphore(16)
    start = time.monotonic()
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=2.0)) as client:

        async def one(k: int, event_id: str) -> None:
            await asyncio.sleep(max(0.0, start + k / rate - time.monotonic()))
            web = webs[k % len(webs)]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                async with sem:
                    t0 = time.perf_counter()
                    try:
                        r = await client.post(f"{web}/hooks/scale", json={"id": event_id})
                    except httpx.HTTPError:
                        r = None
                    if r is not None and r.status_code in (200, 202):
                        result.ingest_ms.append((time.perf_counter() - t0) * 1000)
                        result.accepted += 1
                        result.by_web[web.rsplit(":", 1)[1]] += 1
                        on_progress(k)
                        return
                await asyncio.sleep(0.2)

        await asyncio.gather(*(one(k, i) for k, i in enumerate(ids)))


def scenario(workdir: Path, database_url: str, redis_url: str, *, events: int = 2000, rate: float = 200.0) -> Result:
    workdir.mkdir(parents=True, exist_ok=True)
    children = c.Children(workdir)
    result = Result(events)
    sink_port = c.free_port()
    sink_log = workdir / "sink.jsonl"
    rules = workdir / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "scale.yaml").write_text(RULES.replace("SINK", f"http://127.0.0.1:{sink_port}"))
    env = c.router_env(
        database_url,
        redis_url,
        rules,
        PYTHONPATH=str(REPO),
        ROUTER_LOG_LEVEL="warning",
        ROUTER_JOB_TIMEOUT="5",  # a killed worker's jobs come back within seconds
        ROUTER_SWEEP_INTERVAL="1",
        ROUTER_RETRY_SCHEDULE="1s,2s,2s,5s",
        ROUTER_SHUTDOWN_GRACE="2",
    )
    try:
        sink_env = dict(os.environ, CHAOS_SINK_LOG=str(sink_log), PYTHONPATH=str(REPO))
        children.start("sink", [sys.executable, str(HERE / "chaos.py"), "_sink", "--ports", str(sink_port)], sink_env)
        c.run_router(["db", "upgrade"], env)
        webs = []
        for n in range(2):
            port = c.free_port()
            children.start(f"web-{n}", [*c.router_exe(), "serve", "--port", str(port)], env)
            webs.append(f"http://127.0.0.1:{port}")
        workers = [children.start(f"worker-{n}", [*c.router_exe(), "worker"], env) for n in range(2)]
        for web in webs:
            c.wait_until(c.http_ok(f"{web}/health/ready"), 60, f"{web}/health/ready", children)
        victim = workers[0]
        killed = {"done": False}

        def progress(k: int) -> None:
            if not killed["done"] and result.accepted >= events // 3:  # a third in: kill -9, restart
                killed["done"] = True
                os.kill(victim.pid, signal.SIGKILL)
                victim.proc.wait(10)
                result.kills += 1
                children.start("worker-0-restarted", [*c.router_exe(), "worker"], env)

        ids = [f"{uuid.uuid4().hex[:8]}-{k:05d}" for k in range(events)]
        asyncio.run(send(webs, ids, rate, result, progress))
        sent_at = time.monotonic()
        deadline = sent_at + 180
        while True:
            delivered = {r["id"] for r in receipts(sink_log) if r.get("status") == 200}
            if len(delivered) >= len(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        result.drain_seconds = time.monotonic() - sent_at
        time.sleep(2.0)  # anything still in flight (a re-delivery) lands now
        seen = [r for r in receipts(sink_log) if r.get("status") == 200]
        keys_of: dict[str, set[str]] = {}
        per_key = Counter(r["key"] for r in seen)
        for r in seen:
            keys_of.setdefault(r["id"], set()).add(r["key"])
        result.receipts = len(seen)
        result.delivered_ids = len(keys_of)
        result.keys = len(per_key)
        result.redelivered_same_key = sum(n - 1 for n in per_key.values())
        result.ids_with_two_keys = sorted(i for i, k in keys_of.items() if len(k) > 1)
        result.lost = sorted(set(ids) - set(keys_of))
        result.metrics_accepted = sum(_accepted(httpx.get(f"{web}/metrics", timeout=10).text) for web in webs)
        return result
    finally:
        children.stop_all()


def _accepted(text: str) -> float:
    from router.metrics import sample

    return sample(text, "router_events_received_total", {"source": "scale", "outcome": "accepted"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="an empty PostgreSQL database")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="webhooks per second, over both web processes")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp") / f"router-scaleout-{uuid.uuid4().hex[:6]}")
    args = parser.parse_args()
    c.check_redis(args.redis_url)
    c.purge_queue(args.redis_url)
    result = scenario(args.workdir, args.database_url, args.redis_url, events=args.events, rate=args.rate)
    print(result.line())
    sys.exit(0 if not result.lost and not result.ids_with_two_keys else 1)


if __name__ == "__main__":
    main()
