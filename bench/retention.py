"""Ingest latency with and without retention pruning: a database seeded with old events (default 1,000,000,
each with a run, a step and an attempt), webhooks paced at --rate (500/s) into `router serve`, first alone
(the baseline), then while `router db prune` deletes every seeded event. Prints ingest p50/p95/p99 of both
phases, their ratio, and the prune's rate and longest batch.

    python bench/retention.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/router_bench
    python bench/retention.py --events 200000 --seconds 20          # SQLite in a temporary folder

The database must be empty (or a SQLite file that does not exist yet); the server runs no worker, so
the webhooks stay `received` and are not pruned (only events past ROUTER_RETENTION_DAYS=30 are).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import _common as c  # noqa: E402  (bench/_common.py)

RULES = "sources:\n  - {id: bench, verify: {scheme: none}}\n"
CHUNK = 5000


def ulid_at(moment: datetime, n: int) -> str:
    from router.records.eventlog import id_floor

    return id_floor(moment)[:10] + f"{n:016d}".replace("I", "1")  # digits only: valid Crockford base32


async def seed(database_url: str, events: int, with_runs: bool) -> float:
    """Insert ``events`` old events (60 days ago, 1 ms apart) with their runs, steps and attempts."""
    from sqlalchemy import insert

    from router.records import db
    from router.records.models import Attempt, Event, Run, RunStep

    engine = db.create_engine(database_url)
    await db.migrate(engine)
    start = time.perf_counter()
    base = datetime.now(UTC) - timedelta(days=60)
    try:
        for first in range(0, events, CHUNK):
            rows, runs, steps, attempts = [], [], [], []
            for n in range(first, min(events, first + CHUNK)):
                when = base + timedelta(milliseconds=n)
                event_id = ulid_at(when, n)
                rows.append(
                    {
                        "id": event_id,
                        "source": "bench",
                        "received_at": when,
                        "method": "POST",
                        "path": "/hooks/bench",
                        "headers": {"content-type": "application/json"},
                        "query": {},
                        "content_type": "application/json",
                        "body": {"n": n},
                        "raw_body": b'{"n": 0}',
                        "status": "succeeded",
                        "matched": 1,
                        "chain_depth": 0,
                    }
                )
                if with_runs:
                    run_id, step_id = ulid_at(when, n + 10**12), ulid_at(when, n + 2 * 10**12)
                    runs.append(
                        {"id": run_id, "event_id": event_id, "rule_id": "r", "status": "succeeded", "created_at": when}
                    )
                    steps.append(
                        {
                            "id": step_id,
                            "run_id": run_id,
                            "position": 0,
                            "step_id": "s",
                            "action": "http",
                            "status": "succeeded",
                            "idempotency_key": f"{event_id}:r:s",
                            "attempts_count": 1,
                        }
                    )
                    attempts.append(
                        {
                            "run_step_id": step_id,
                            "number": 1,
                            "started_at": when,
                            "duration_ms": 12.5,
                            "outcome": "succeeded",
                            "response_status": 200,
                            "response_body": "ok",
                        }
                    )
            async with engine.begin() as conn:
                await conn.execute(insert(Event), rows)
                if with_runs:
                    await conn.execute(insert(Run), runs)
                    await conn.execute(insert(RunStep), steps)
                    await conn.execute(insert(Attempt), attempts)
            if first and first % 100_000 == 0:
                print(f"  seeded {first:,} events ({time.perf_counter() - start:.0f} s)", flush=True)
    finally:
        await engine.dispose()
    return time.perf_counter() - start


async def seeded_left(database_url: str) -> int:
    from sqlalchemy import func, select

    from router.records import db
    from router.records.models import Event

    engine = db.create_engine(database_url)
    try:
        async with engine.connect() as conn:
            found = await conn.scalar(select(func.count()).where(Event.source == "bench", Event.status == "succeeded"))
            return int(found or 0)
    finally:
        await engine.dispose()


def load(url: str, seconds: float, rate: float) -> Any:
    import httpx

    payloads = c.Payloads()

    def make_send() -> Any:
        _id, body = payloads.make()

        async def send(client: httpx.AsyncClient) -> httpx.Response:
            return await client.post(f"{url}/hooks/bench", content=body, headers={"content-type": "application/json"})

        return send

    return c.run_async(c.closed_loop(make_send, concurrency=32, seconds=seconds, rate=rate))


def figures(latencies: list[float]) -> dict[str, float]:
    return {q: c.percentile(latencies, float(q[1:])) * 1000 for q in ("p50", "p95", "p99")} | {
        "max": max(latencies) * 1000 if latencies else float("nan")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="an empty database (default: SQLite in a temporary folder)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--events", type=int, default=1_000_000, help="old events to seed and prune")
    parser.add_argument("--events-only", action="store_true", help="seed events without runs, steps, attempts")
    parser.add_argument("--rate", type=float, default=500.0, help="webhooks per second during both phases")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the baseline phase")
    parser.add_argument(
        "--max-prune-seconds", type=float, default=1800.0, help="stop the prune then and report how far it got"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="router-retention-bench-"))
    database_url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    rules = workdir / "rules"
    rules.mkdir()
    (rules / "bench.yaml").write_text(RULES)
    c.check_redis(args.redis_url)
    print(
        f"seeding {args.events:,} events{'' if args.events_only else ' with runs, steps and attempts'} "
        f"into {c.redact_url(database_url)}",
        flush=True,
    )
    seeded = c.run_async(seed(database_url, args.events, not args.events_only))
    print(f"seeded in {seeded:.0f} s", flush=True)
    env = c.router_env(database_url, args.redis_url, rules, ROUTER_LOG_LEVEL="warning", PYTHONPATH=str(REPO))
    children = c.Children(workdir)
    port = c.free_port()
    url = f"http://127.0.0.1:{port}"
    c.raise_on_sigterm()
    with c.stopping(children):
        children.start("serve", [*c.router_exe(), "serve", "--port", str(port)], env)
        c.wait_until(c.http_ok(f"{url}/health"), 60, "router serve", children)
        load(url, 3, args.rate)  # warm-up
        print(f"baseline: {args.rate:g} webhooks/s for {args.seconds:g} s, no pruning", flush=True)
        base = load(url, args.seconds, args.rate)
        prune_env = env | {"ROUTER_RETENTION_DAYS": "30"}
        print("pruning: the same load while `router db prune` deletes the seeded events", flush=True)
        started = time.monotonic()
        prune = children.start("prune", [*c.router_exe(), "db", "prune"], prune_env)
        during: list[float] = []
        statuses: dict[int, int] = {}
        while prune.proc.poll() is None and time.monotonic() - started < args.max_prune_seconds:
            part = load(url, 10, args.rate)
            during.extend(part.latencies)
            for code, n in part.statuses.items():
                statuses[code] = statuses.get(code, 0) + n
        finished = prune.proc.poll() is not None
        if not finished:  # out of time: stop it and count what it deleted
            children.stop(prune)
        took = time.monotonic() - started
        if finished and prune.proc.returncode != 0:
            raise SystemExit(f"router db prune failed:\n{prune.tail()}")
        if finished:
            report = json.loads(prune.log.read_text().strip().splitlines()[-1])
        else:
            left = c.run_async(seeded_left(database_url))
            report = {"events": args.events - left, "batches": 0, "longest_batch_ms": float("nan"), "unfinished": left}
        health = json.loads(c.http().get(f"{url}/health").text)["storage"]
    a, b = figures(base.latencies), figures(during)
    result = {
        "database": "postgresql" if database_url.startswith("postgresql") else "sqlite",
        "seeded_events": args.events,
        "with_runs": not args.events_only,
        "rate": args.rate,
        "baseline_ms": a,
        "baseline_requests": len(base.latencies),
        "baseline_non_2xx": base.non_2xx,
        "pruning_ms": b,
        "pruning_requests": len(during),
        "pruning_non_2xx": sum(n for code, n in statuses.items() if not 200 <= code < 300),
        "p99_ratio": b["p99"] / a["p99"],
        "prune": report | {"events_per_second": report["events"] / max(took, 1e-9), "wall_seconds": took},
        "database_bytes_after": health["database_bytes"],
    }
    print(json.dumps(result, indent=2))
    print(
        f"retention: pruned {report['events']:,} events in {took:.0f} s ({report['events'] / took:,.0f}/s, "
        f"{report['batches']:,} batches, longest {report['longest_batch_ms']} ms) under {args.rate:g} webhooks/s; "
        f"ingest p99 {a['p99']:.1f} ms without pruning, {b['p99']:.1f} ms while pruning "
        f"({(result['p99_ratio'] - 1) * 100:+.0f} %); p50 {a['p50']:.1f} → {b['p50']:.1f} ms"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
