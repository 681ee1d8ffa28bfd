"""One of 20 destinations always failing: how much does it cost the 19 healthy ones?

Runs a worker in-process against a loopback sink that answers on 127.0.0.1 to 127.0.0.20 (each address
is its own destination); 127.0.0.20 waits 2 s and answers 503. Events are stored and enqueued at a
fixed rate, spread round-robin over the 20 destinations, with a retry schedule of 1 s, 5 times. It
prints the healthy deliveries' latency (store → sink) p50/p95/p99 in three runs:

  baseline      only the 19 healthy destinations get events
  breaker       the failing destination gets its share too (the breaker on, as shipped)
  no breaker    the same, with the breaker disabled

Usage: python bench/breaker.py [--rate 100] [--seconds 10] [--database-url URL] [--redis-url URL]
Everything runs on loopback; the sink and worker stop at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from router.logs import configure
from router.pipeline import destinations
from router.pipeline.ingest import Incoming, new_event_row
from router.pipeline.store import insert_events
from router.settings import load_settings
from router.worker import build_worker, close_state, create_redis, create_state

FAILING = 20
ARRIVALS: dict[str, float] = {}


async def sink(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    host = dict(scope["headers"]).get(b"host", b"").decode()
    if host.startswith(f"127.0.0.{FAILING}:"):
        await asyncio.sleep(2.0)
        status = 503
    else:
        ARRIVALS[json.loads(body)["id"]] = time.monotonic()
        status = 200
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def rules(port: int) -> str:
    rules = [
        {
            "id": f"to-{n}",
            "source": "bench",
            "filter": f"body.dest == `{n}`",
            "steps": [
                {
                    "id": "call",
                    "action": "http",
                    "with": {"url": f"http://127.0.0.{n}:{port}/x", "json": {"id": "{{ body.id }}"}},
                }
            ],
        }
        for n in range(1, FAILING + 1)
    ]
    return json.dumps({"sources": [{"id": "bench"}], "rules": rules})


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


async def scenario(name: str, args: argparse.Namespace, port: int, folder: Path, include_failing: bool) -> None:
    ARRIVALS.clear()
    settings = load_settings(
        database_url=args.database_url,
        redis_url=args.redis_url,
        rules_dir=folder,
        egress_allow="127.0.0.0/8",
        retry_schedule="1s,1s,1s,1s,1s",
        retry_jitter=0,
        log_level="warning",
    )
    redis = create_redis(settings.redis_url)
    await redis.flushdb()
    state = await create_state(settings)
    worker = build_worker(settings, state=state, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    sent: dict[str, float] = {}
    total = int(args.rate * args.seconds)
    start = time.monotonic()
    for i in range(total):
        await asyncio.sleep(max(0.0, start + i / args.rate - time.monotonic()))
        dest = i % FAILING + 1
        if dest == FAILING and not include_failing:
            dest = 1
        row = new_event_row(
            None, Incoming("bench", "POST", "/hooks/bench", {}, {}, b"{}"), {"id": f"{name}-{i}", "dest": dest}
        )
        async with state.engine.begin() as conn:
            await insert_events(conn, [row])
        if dest != FAILING:
            sent[row["body"]["id"]] = time.monotonic()
        await redis.enqueue_job("process_event", row["id"], _job_id=f"event:{row['id']}")
    deadline = time.monotonic() + 30
    while len([k for k in sent if k in ARRIVALS]) < len(sent) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    latencies = [ARRIVALS[k] - t for k, t in sent.items() if k in ARRIVALS]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    await worker.close()
    await close_state(state)
    await redis.flushdb()
    await redis.aclose(close_connection_pool=True)
    print(
        f"{name:<11} healthy deliveries {len(latencies)}/{len(sent)}: p50 {pct(latencies, 0.5):.1f} ms  "
        f"p95 {pct(latencies, 0.95):.1f} ms  p99 {pct(latencies, 0.99):.1f} ms"
    )


async def main(args: argparse.Namespace) -> None:
    configure("error")
    port = 47000 + int(time.time()) % 1000
    server = uvicorn.Server(uvicorn.Config(sink, host="0.0.0.0", port=port, log_level="warning", access_log=False))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.05)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "rules"
        folder.mkdir()
        (folder / "r.yaml").write_text(rules(port))
        if args.database_url is None:
            args.database_url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        await scenario("baseline", args, port, folder, include_failing=False)
        await scenario("breaker", args, port, folder, include_failing=True)
        destinations.MIN_CALLS = 10**9  # no breaker
        await scenario("no breaker", args, port, folder, include_failing=True)
    server.should_exit = True
    await serving


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0, help="events per second (default 100)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to send (default 10)")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12", help="a Redis database to use and empty")
    asyncio.run(main(parser.parse_args()))
