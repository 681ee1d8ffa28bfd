"""End-to-end benchmark: delivered events per second, and the latency from webhook in to delivery out.

What it does
  1. Starts a loopback sink (bench/_sink.py: a raw ASGI app under uvicorn, its own process) that records
     the arrival time of each delivery under the id it carries.
  2. Writes a temporary rules folder: source `e2e-<run>` (verify: {scheme: none}) and one rule whose only
     step is an `http` POST of {"id": "{{ body.bench_id }}"} to the sink.
  3. `router db upgrade`, then `router serve --workers N` and --worker-procs x `router worker`, on a
     temporary SQLite file (or --database-url) and a bench-only Redis database (purged before and after).
  4. Warm-up: a few events, waited for until delivered (this also proves the whole path works).
  5. Load: --concurrency connections for --seconds, each webhook a ~1.3 KB JSON body with a unique
     bench_id; closed loop, or paced to --rate events/s in all. Then it waits (at most --drain-timeout
     without progress) until every accepted event has been delivered.
  6. Reports ingest accepted/s, delivered/s, the backlog when the load stopped, and ingest->delivery
     latency p50/p95/p99/max, missing and repeated deliveries, and the events' final status counts.

Latency: the payload carries no timestamp, so latency = the sink's arrival time minus the client's send
time, matched by bench_id; both are time.time() on this machine's one clock.
Closed-loop load measures capacity; when ingest outruns delivery the backlog grows and the latency then
measures the queue. Use --rate below the delivered/s figure to measure latency without a queue.
The load generator (httpx, this process) shares the 2 CPUs with everything else; see bench/ingest.py.

Examples
  python bench/e2e.py --seconds 10
  python bench/e2e.py --seconds 10 --rate 200
  python bench/e2e.py --seconds 10 --worker-procs 2 --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/router_bench
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from _common import (
    HOST,
    Children,
    LoadResult,
    Payloads,
    Send,
    check_redis,
    closed_loop,
    delete_events,
    free_port,
    group_cpu_seconds,
    http,
    http_ok,
    ms,
    percentile,
    purge_queue,
    raise_on_sigterm,
    redact_url,
    router_env,
    router_exe,
    run_async,
    run_router,
    wait_until,
)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/10"
BENCH_DIR = Path(__file__).resolve().parent
SINK_ARGV = [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH_DIR), "_sink:app"]
SINK_ARGV += ["--log-level", "warning", "--no-access-log", "--lifespan", "off"]


def rules_yaml(source: str, rule: str, sink_url: str) -> str:
    return f"""\
sources:
  - id: {source}
    description: end-to-end benchmark
    verify: {{scheme: none}}
rules:
  - id: {rule}
    source: {source}
    steps:
      - id: deliver
        action: http
        with:
          url: "{sink_url}"
          json: {{id: "{{{{ body.bench_id }}}}"}}
"""


@dataclass
class Result:
    seconds: float
    concurrency: int
    rate: float | None
    web_processes: int
    worker_processes: int
    accepted: int
    accepted_per_s: float
    non_2xx: int
    transport_errors: int
    delivered: int
    delivered_per_s: float
    backlog_at_load_end: int
    drain_s: float
    missing: int
    repeated: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int]
    cpu_s: dict[str, float]  # CPU seconds per process (group) from the load's start to the last delivery
    wall_s: float


class Tracker:
    """Send times by bench_id, and the ids the router accepted."""

    def __init__(self) -> None:
        self.payloads = Payloads()
        self.sent_at: dict[str, float] = {}
        self.accepted: list[str] = []

    def make_send(self, url: str) -> Send:
        bench_id, body = self.payloads.make()
        headers = {"content-type": "application/json"}

        async def send(client: httpx.AsyncClient) -> httpx.Response:
            self.sent_at[bench_id] = time.time()
            response = await client.post(url, content=body, headers=headers)
            if response.status_code == 202:
                self.accepted.append(bench_id)
            return response

        return send


def sink_count(sink: str) -> int:
    try:
        return int(http().get(f"{sink}/count").json()["unique"])
    except (httpx.HTTPError, ValueError, KeyError):
        return -1


def wait_delivered(sink: str, target: int, stall_timeout: float, children: Children) -> tuple[int, float]:
    """Poll the sink until `target` distinct ids arrived or nothing new arrived for `stall_timeout` s."""
    start = time.monotonic()
    last_count, last_progress = -1, start
    while True:
        children.check_alive()
        count = sink_count(sink)
        now = time.monotonic()
        if count >= target:
            return count, now - start
        if count > last_count:
            last_count, last_progress = count, now
        elif now - last_progress > stall_timeout:
            return count, now - start
        time.sleep(0.1)


async def event_statuses(database_url: str, source: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from router.records import db
    from router.records.models import Event

    engine = db.create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(Event.status, func.count()).where(Event.source == source).group_by(Event.status)
            )
            return {str(status): int(n) for status, n in rows}
    finally:
        await engine.dispose()


def summarize(
    args: argparse.Namespace, tracker: Tracker, load: LoadResult, arrivals: dict[str, list[float]], load_end: float
) -> tuple[Result, list[float]]:
    accepted = tracker.accepted
    latencies: list[float] = []
    first_arrivals: list[float] = []
    repeated = 0
    for bench_id in accepted:
        times = arrivals.get(bench_id)
        if not times:
            continue
        repeated += len(times) - 1
        first = min(times)
        first_arrivals.append(first)
        latencies.append(first - tracker.sent_at[bench_id])
    first_send = min((tracker.sent_at[i] for i in accepted), default=0.0)
    span = (max(first_arrivals) - first_send) if first_arrivals else 0.0
    delivered_by_load_end = sum(1 for t in first_arrivals if t <= load_end)
    result = Result(
        seconds=round(load.seconds, 3),
        concurrency=args.concurrency,
        rate=args.rate,
        web_processes=args.workers,
        worker_processes=args.worker_procs,
        accepted=len(accepted),
        accepted_per_s=round(len(accepted) / load.seconds, 1) if load.seconds else 0.0,
        non_2xx=load.non_2xx,
        transport_errors=load.failed,
        delivered=len(first_arrivals),
        delivered_per_s=round(len(first_arrivals) / span, 1) if span > 0 else 0.0,
        backlog_at_load_end=len(accepted) - delivered_by_load_end,
        drain_s=0.0,
        missing=len(accepted) - len(first_arrivals),
        repeated=repeated,
        p50_ms=round(percentile(latencies, 50) * 1000, 2),
        p95_ms=round(percentile(latencies, 95) * 1000, 2),
        p99_ms=round(percentile(latencies, 99) * 1000, 2),
        max_ms=round(max(latencies, default=float("nan")) * 1000, 2),
        statuses={},
        cpu_s={},
        wall_s=0.0,
    )
    return result, latencies


def report(r: Result) -> None:
    mode = f"paced to {r.rate:g}/s" if r.rate else "closed loop"
    print(
        f"\nend to end: {mode}, {r.concurrency} connections, {r.web_processes} web process(es), "
        f"{r.worker_processes} worker process(es)"
    )
    print(f"  ingest        {r.accepted_per_s:10.1f} accepted/s  ({r.accepted} x 202 in {r.seconds:.2f} s)")
    print(f"  delivered/s   {r.delivered_per_s:10.1f}   (first send to last delivery)")
    print(f"  backlog       {r.backlog_at_load_end} undelivered when the load stopped; drained in {r.drain_s:.1f} s")
    print(
        f"  latency       p50 {ms(r.p50_ms / 1000)}  p95 {ms(r.p95_ms / 1000)}  p99 {ms(r.p99_ms / 1000)}  "
        f"max {ms(r.max_ms / 1000)}   (sink arrival - client send)"
    )
    print(f"  non-2xx       {r.non_2xx}   transport errors {r.transport_errors}")
    print(f"  deliveries    {r.delivered} of {r.accepted}; missing {r.missing}, repeated {r.repeated}")
    print(f"  event status  {r.statuses}")
    usage = ", ".join(f"{name} {cpu:.1f} s ({cpu / r.wall_s:.0%})" for name, cpu in r.cpu_s.items())
    print(f"  cpu           {usage}  of {r.wall_s:.1f} s wall, load and drain")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="load duration (default 10)")
    p.add_argument("--concurrency", type=int, default=16, help="ingest connections (default 16)")
    p.add_argument("--rate", type=float, default=None, help="pace sends to this many per second in all")
    p.add_argument("--workers", type=int, default=1, help="web processes: router serve --workers (default 1)")
    p.add_argument("--worker-procs", type=int, default=1, help="`router worker` processes (default 1)")
    p.add_argument("--max-jobs", type=int, default=None, help="ROUTER_WORKER_MAX_JOBS (default: the router's)")
    p.add_argument("--warmup-events", type=int, default=20, help="events delivered before measuring (default 20)")
    p.add_argument("--drain-timeout", type=float, default=30.0, help="give up after this long with no delivery")
    p.add_argument("--database-url", default=None, help="an existing database (default: a temporary SQLite file)")
    p.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help=f"bench-only Redis db (default {DEFAULT_REDIS_URL})")
    p.add_argument("--log-level", default="warning", help="ROUTER_LOG_LEVEL of web and workers (default warning)")
    p.add_argument("--json", type=Path, default=None, help="also write the result to this JSON file")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (database, logs)")
    args = p.parse_args(argv)
    if min(args.concurrency, args.workers, args.worker_procs) < 1 or args.seconds <= 0:
        p.error("--concurrency, --workers, --worker-procs and --seconds must be positive")
    if args.rate is not None and args.rate <= 0:
        p.error("--rate must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_on_sigterm()
    tmp = Path(tempfile.mkdtemp(prefix="router-bench-e2e-"))
    run = uuid.uuid4().hex[:6]
    source, rule = f"e2e-{run}", f"fwd-{run}"
    database_url = args.database_url or f"sqlite+aiosqlite:///{tmp / 'router.db'}"
    sink_port, web_port = free_port(), free_port()
    sink = f"http://{HOST}:{sink_port}"
    rules_dir = tmp / "rules"
    rules_dir.mkdir()
    (rules_dir / "bench.yaml").write_text(rules_yaml(source, rule, f"{sink}/deliver"))
    check_redis(args.redis_url)
    purge_queue(args.redis_url)
    extra = {"ROUTER_LOG_LEVEL": args.log_level}
    if args.max_jobs:
        extra["ROUTER_WORKER_MAX_JOBS"] = str(args.max_jobs)
    env = router_env(database_url, args.redis_url, rules_dir, **extra)
    children = Children(tmp)
    result: Result | None = None
    print(
        f"router serve --workers {args.workers} + {args.worker_procs} x router worker on "
        f"{redact_url(database_url)}, Redis {args.redis_url}; sink {sink}"
    )
    try:
        run_router(["db", "upgrade"], env)
        children.start(
            "sink",
            [*SINK_ARGV, "--host", HOST, "--port", str(sink_port)],
            env,
        )
        wait_until(http_ok(f"{sink}/count"), 30, "sink", children)
        children.start(
            "web",
            [*router_exe(), "serve", "--host", HOST, "--port", str(web_port), "--workers", str(args.workers)],
            env,
        )
        for n in range(args.worker_procs):
            children.start(f"worker-{n}", [*router_exe(), "worker"], env)
        wait_until(http_ok(f"http://{HOST}:{web_port}/health"), 60, "router serve", children)
        hook = f"http://{HOST}:{web_port}/hooks/{source}"

        warm = Tracker()
        warm_load = run_async(
            closed_loop(lambda: warm.make_send(hook), concurrency=4, seconds=60, requests=args.warmup_events)
        )
        if len(warm.accepted) != args.warmup_events:
            raise RuntimeError(f"warm-up: {len(warm.accepted)} of {args.warmup_events} accepted: {warm_load.statuses}")
        count, _ = wait_delivered(sink, len(warm.accepted), 60, children)
        if count < len(warm.accepted):
            raise RuntimeError(f"warm-up: {count} of {len(warm.accepted)} delivered within 60 s; see {tmp}/*.log")
        baseline = count

        tracker = Tracker()
        cpu0 = {c.name: group_cpu_seconds(c.pid) for c in children.items} | {"load generator": time.process_time()}
        wall0 = time.monotonic()
        load = run_async(
            closed_loop(
                lambda: tracker.make_send(hook), concurrency=args.concurrency, seconds=args.seconds, rate=args.rate
            )
        )
        load_end = time.time()
        children.check_alive()
        _, drain = wait_delivered(sink, baseline + len(tracker.accepted), args.drain_timeout, children)
        wall = time.monotonic() - wall0
        cpu1 = {c.name: group_cpu_seconds(c.pid) for c in children.items} | {"load generator": time.process_time()}
        arrivals: dict[str, list[float]] = http().get(f"{sink}/results", timeout=30).json()
        result, _ = summarize(args, tracker, load, arrivals, load_end)
        result.drain_s = round(drain, 2)
        result.cpu_s = {name: round(cpu1[name] - cpu0[name], 2) for name in cpu0}
        result.wall_s = round(wall, 2)
        time.sleep(0.5)  # the last runs' final status commits follow their delivery
        result.statuses = run_async(event_statuses(database_url, source))
        report(result)
    finally:
        children.stop_all()
        if args.database_url:
            run_async(delete_events(database_url, [source]))
        purge_queue(args.redis_url)
        if args.keep:
            print(f"\nkept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        record: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "result": asdict(result)}
        args.json.write_text(json.dumps(record, indent=2))
    ok = result.accepted > 0 and result.missing == 0 and result.non_2xx == 0
    print(f"\n{'OK: every accepted event was delivered' if ok else 'FAILED: see above'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
