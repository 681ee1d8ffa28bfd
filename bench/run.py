"""Event Router's speed, measured as shipped: every figure of the speed targets in one run.

    python bench/run.py                 # the full run on SQLite, then PostgreSQL when it answers (~45 min)
    python bench/run.py --quick         # a smoke run (~4 min): shorter loads, smaller rule sets
    python bench/run.py --database sqlite --soak-seconds 60 --profile prof/

It starts the real processes (`router serve`, `router worker`, default settings, in a scratch folder),
a loopback sink (bench/_sink.py) and, for the same-run baseline, the parse-only floor (bench/_floor.py:
Litestar + msgspec under the same server and process count as `router serve`). Loads: wrk for
throughput (-t1 -c64, a 1.3 KB Stripe-like event with a unique id per request), a paced open-loop sender
stamping the send time into each event for ingest→sink latency, bursts to build a backlog for the worker
alone, and rule sets of 10 / 1,000 / 10,000 rules of which one matches (bench/_rulesets.py).
It prints one table: each figure, its target, and whether it is met. No figure is asserted anywhere else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import HOST, check_redis, group_cpu_seconds, http, percentile, purge_queue, raise_on_sigterm
from _load import burst, event_bytes, lua_folder, paced, run_wrk, serial, wrk_script
from _profile import Profiler
from _stack import Stack, create_pg_database, drop_pg_database, router_check_seconds, rss_mb

DEFAULT_REDIS = "redis://127.0.0.1:6379/11"
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@dataclass
class Plan:
    wrk_seconds: float
    wrk_runs: int
    drain_events: int
    paced_seconds: float
    serial_events: int
    rule_sizes: tuple[int, ...]
    rules_drain_events: int
    soak_seconds: float
    soak_rate: float = 500.0
    paced_rate: float = 200.0

    @classmethod
    def make(cls, quick: bool, soak_seconds: float | None) -> Plan:
        if quick:
            return cls(5, 1, 2000, 5, 30, (10, 1000, 10000), 500, 20 if soak_seconds is None else soak_seconds)
        return cls(10, 3, 10000, 10, 100, (10, 1000, 10000), 2000, 600 if soak_seconds is None else soak_seconds)


@dataclass
class Row:
    figure: str
    value: str
    target: str = ""
    met: bool | None = None


@dataclass
class Report:
    database: str
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: str, value: str, target: str = "", met: bool | None = None) -> None:
        self.rows.append(Row(figure, value, target, met))
        mark = "" if met is None else ("  ok" if met else "  MISSED")
        print(f"  {figure}: {value}" + (f"   (target {target}){mark}" if target else ""), flush=True)


def body_maker(prefix: str, stamp: bool = False) -> Any:
    def make(index: int) -> bytes:
        return event_bytes(f"evt_{prefix}_{index:09d}", time.time() if stamp else 0.0)

    return make


def fmt(value: float, unit: str = "", digits: int = 0) -> str:
    if value != value:
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


# -- phases ---------------------------------------------------------------------------------------


def measure_floor(stack: Stack, plan: Plan, lua: Path) -> float:
    child, port = stack.start_floor()
    try:
        script = wrk_script("floor" + uuid.uuid4().hex[:6], lua)
        run_wrk(f"http://{HOST}:{port}/hooks/floor", script, 3)  # warm-up
        runs = [run_wrk(f"http://{HOST}:{port}/hooks/floor", script, plan.wrk_seconds) for _ in range(plan.wrk_runs)]
    finally:
        stack.stop(child)
    return statistics.median(r.per_s for r in runs)


def accepted_while_delivering(stack: Stack, plan: Plan, lua: Path, floor: float, rep: Report, prof: Profiler) -> None:
    stack.sink_reset()
    before = stack.event_count()
    script = wrk_script("load" + uuid.uuid4().hex[:6], lua)
    runs = []
    for i in range(plan.wrk_runs):
        with prof.during("accept-and-deliver", {"web": stack.web, "worker": stack.workers[0]}, plan.wrk_seconds, i):
            runs.append(run_wrk(stack.web_url + stack.hook_path, script, plan.wrk_seconds))
    time.sleep(2)  # requests wrk gave up on may still be committed
    accepted = stack.event_count() - before
    med = sorted(runs, key=lambda r: r.per_s)[len(runs) // 2]
    rep.raw["accept_runs"] = [r.__dict__ for r in runs]
    rep.add(
        "accepted/s, worker running and delivering",
        f"{fmt(med.per_s)} ({med.per_s / floor:.2f} x floor)",
        "≥ 0.45 x floor",
        med.per_s / floor >= 0.45,
    )
    rep.add(
        "  ingest p50 / p99",
        f"{fmt(med.p50_ms, ' ms', 1)} / {fmt(med.p99_ms, ' ms', 1)}",
        "p99 ≤ 50 ms",
        med.p99_ms <= 50,
    )
    non2xx = sum(r.non_2xx + r.socket_errors for r in runs)
    rep.add("  non-2xx answers and socket errors", str(non2xx), "0", non2xx == 0)
    started = time.monotonic()
    while True:  # counted again after each wait: anything committed late is then counted too
        stats = stack.wait_delivered(accepted, idle_timeout=60)
        recount = stack.event_count() - before
        if recount == accepted:
            break
        accepted = recount
    lost = accepted - stats["unique_keys"]
    rep.add(
        "  every accepted event delivered afterwards",
        f"{stats['unique_keys']:,} of {accepted:,} (lost {lost}, duplicates {stats['duplicates']}; "
        f"backlog drained {time.monotonic() - started:.1f} s after the load)",
        "0 lost, 0 duplicates",
        lost <= 0 and stats["duplicates"] == 0,
    )


def accepted_worker_stopped(stack: Stack, plan: Plan, lua: Path, floor: float, rep: Report) -> int:
    script = wrk_script("stopped" + uuid.uuid4().hex[:6], lua)
    before = stack.event_count()
    runs = [run_wrk(stack.web_url + stack.hook_path, script, plan.wrk_seconds) for _ in range(plan.wrk_runs)]
    med = sorted(runs, key=lambda r: r.per_s)[len(runs) // 2]
    rep.add(
        "accepted/s, worker stopped",
        f"{fmt(med.per_s)} ({med.per_s / floor:.2f} x floor), p99 {fmt(med.p99_ms, ' ms', 1)}",
    )
    time.sleep(2)
    return stack.event_count() - before


def drain(
    stack: Stack,
    count: int,
    workers: int = 1,
    prof: Profiler | None = None,
    label: str = "drain",
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Queue ``count`` events with no worker running, then start ``workers`` and time their delivery."""
    stack.stop_workers()
    stack.sink_reset()
    ok = asyncio.run(burst(stack.web_port, stack.hook_path, count, body_maker(label + uuid.uuid4().hex[:6])))
    for i in range(workers):
        stack.start_worker(f"worker-{i}")
    while stack.sink_count() == 0:  # CPU is counted from the first delivery: start-up (imports) is not delivery
        stack.children.check_alive()
        time.sleep(0.01)
    cpu0 = sum(group_cpu_seconds(w.pid) for w in stack.workers)
    if prof is not None and prof.enabled:
        threading.Thread(target=prof.record, args=(label, {"worker": stack.workers[0]}, 6.0), daemon=True).start()
    stats = stack.wait_delivered(ok, idle_timeout=60, max_seconds=max_seconds)
    cpu = sum(group_cpu_seconds(w.pid) for w in stack.workers) - cpu0
    span = max(1e-9, stats["last"] - stats["first"])
    delivered = stats["unique_keys"]
    return {
        "worker_cpu_ms_per_event": cpu * 1000 / max(1, delivered - 1),
        "queued": ok,
        "delivered": delivered,
        "per_s": (delivered - 1) / span if delivered > 1 else float("nan"),
        "ms_per_event": span * 1000 / max(1, delivered - 1),
        "lost": ok - delivered if max_seconds is None else 0,  # a time-boxed drain is not a loss check
        "duplicates": stats["duplicates"],
    }


def latency_paced(stack: Stack, plan: Plan, rep: Report) -> None:
    stack.sink_reset()
    result = asyncio.run(
        paced(stack.web_port, stack.hook_path, plan.paced_rate, plan.paced_seconds, body_maker("paced", stamp=True))
    )
    stats = stack.wait_delivered(result.accepted, idle_timeout=30)
    lat = [v * 1000 for v in stats["latencies"]]
    ingest = result.ingest_ms()
    late = result.late(10.0)
    slow = sum(1 for v in ingest if v > 50)
    achieved = result.accepted / plan.paced_seconds
    rep.add(
        f"{plan.paced_rate:.0f} events/s open loop for {plan.paced_seconds:g} s",
        f"{fmt(achieved)}/s accepted, {result.non_2xx} refused, {slow} answered after 50 ms; "
        f"ingest p50 / p99 {fmt(percentile(ingest, 50), ' ms', 1)} / {fmt(percentile(ingest, 99), ' ms', 1)} "
        f"(the sender itself was > 10 ms late for {late})",
        "every event accepted on time (2xx within 50 ms)",
        result.non_2xx == 0 and slow == 0 and result.accepted == int(plan.paced_rate * plan.paced_seconds),
    )
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    rep.add(
        "  ingest → sink p50 / p99",
        f"{fmt(p50, ' ms', 1)} / {fmt(p99, ' ms', 1)} ({len(lat):,} delivered, {stats['duplicates']} duplicates)",
        "p50 ≤ 5 ms, p99 ≤ 25 ms",
        p50 <= 5 and p99 <= 25 and len(lat) == result.accepted,
    )


def latency_serial(stack: Stack, plan: Plan, rep: Report) -> None:
    stack.sink_reset()
    ok = asyncio.run(serial(stack.web_port, stack.hook_path, plan.serial_events, body_maker("serial", stamp=True)))
    stats = stack.wait_delivered(ok, idle_timeout=15)
    lat = [v * 1000 for v in stats["latencies"]]
    rep.add(
        "serial, one event at a time: ingest → sink p50 / p99",
        f"{fmt(percentile(lat, 50), ' ms', 1)} / {fmt(percentile(lat, 99), ' ms', 1)}",
    )


def rule_sets(stack: Stack, plan: Plan, rep: Report, prof: Profiler) -> None:
    base_ms: float | None = None
    for size in plan.rule_sizes:
        stack.stop_workers()
        stack.stop_web()
        stack.write_rules(size)
        check_s, check_ok = router_check_seconds(stack.rules_dir, stack.env())
        start_s = stack.start_web()
        d = drain(stack, plan.rules_drain_events, prof=prof, label=f"rules-{size}", max_seconds=90)
        ms_event = d["ms_per_event"]
        base_ms = ms_event if base_ms is None else base_ms
        extra = ms_event - base_ms
        rep.raw[f"rules_{size}"] = {"check_s": check_s, "start_s": start_s, **d}
        rep.add(
            f"{size:,} rules: worker ms/event · `router check` · start until first 2xx",
            f"{ms_event:.2f} ms (+{extra:.2f}) · {check_s:.1f} s{'' if check_ok else ' (FAILED)'} · {start_s:.1f} s",
            "+≤ 1 ms over 10 rules · ≤ 5 s · ≤ 10 s",
            extra <= 1.0 and check_s <= 5 and check_ok and start_s <= 10,
        )
    hot_reload(stack, rep)


def hot_reload(stack: Stack, rep: Report) -> None:
    """With the biggest rule set in force and events arriving, edit the file; time until both processes use it."""
    path = stack.rules_dir / "bench-000.yaml"
    before = _health_version(stack)
    result: dict[str, Any] = {}

    def load() -> None:
        result["paced"] = asyncio.run(paced(stack.web_port, stack.hook_path, 100, 12, body_maker("reload", stamp=True)))

    stack.sink_reset()
    sender = threading.Thread(target=load, daemon=True)
    sender.start()
    time.sleep(3)
    edited = time.monotonic()
    path.write_text(path.read_text().replace("`1000000000`", "`1000000001`", 1))
    web_s = worker_s = float("nan")
    deadline = edited + 60
    while time.monotonic() < deadline and (web_s != web_s or worker_s != worker_s):
        if web_s != web_s and _health_version(stack) not in (before, None):
            web_s = time.monotonic() - edited
        if worker_s != worker_s and _latest_run_version(stack) not in (before, None):
            worker_s = time.monotonic() - edited
        time.sleep(0.1)
    sender.join()
    paced_result = result["paced"]
    ingest = paced_result.ingest_ms()
    worst = max(ingest) if ingest else float("nan")
    rep.add(
        "hot reload of the largest rule set: in force in web · worker; ingest during it",
        f"{fmt(web_s, ' s', 1)} · {fmt(worker_s, ' s', 1)}; 100/s kept: {paced_result.accepted} of "
        f"{len(paced_result.sent) + paced_result.errors} accepted, worst ingest {fmt(worst, ' ms', 0)}",
        "≤ 10 s, ingest not paused",
        web_s <= 10 and worker_s <= 10 and paced_result.non_2xx == 0 and worst < 1000,
    )


def _health_version(stack: Stack) -> str | None:
    try:
        data = http().get(stack.web_url + "/health", timeout=5).json()
        return str(data["checks"]["rules"]["version"])
    except Exception:
        return None


def _latest_run_version(stack: Stack) -> str | None:
    """The rule-set version the worker routed its newest event with (read from the database)."""
    from _common import run_async
    from sqlalchemy import select

    from router.records import db
    from router.records.models import Run

    url = stack.database_url or f"sqlite+aiosqlite:///{stack.root / 'data' / 'router.db'}"

    async def read() -> str | None:
        engine = db.create_engine(url)
        try:
            async with engine.connect() as conn:
                value = await conn.scalar(select(Run.ruleset_version).order_by(Run.id.desc()).limit(1))
                return None if value is None else str(value)
        finally:
            await engine.dispose()

    try:
        return run_async(read())
    except Exception:
        return None


def soak(stack: Stack, plan: Plan, rep: Report) -> None:
    samples: list[tuple[float, float, float, int]] = []
    stack.sink_reset()
    result: dict[str, Any] = {}

    def load() -> None:
        result["paced"] = asyncio.run(
            paced(
                stack.web_port, stack.hook_path, plan.soak_rate, plan.soak_seconds, body_maker("soak", stamp=True), 64
            )
        )

    sender = threading.Thread(target=load, daemon=True)
    started = time.monotonic()
    sender.start()
    step = max(1.0, plan.soak_seconds / 60)
    while sender.is_alive():
        time.sleep(step)
        elapsed = time.monotonic() - started
        sent = int(min(elapsed, plan.soak_seconds) * plan.soak_rate)
        assert stack.web is not None
        samples.append((elapsed, rss_mb(stack.web.pid), rss_mb(stack.workers[0].pid), sent - stack.sink_count()))
    sender.join()
    paced_result = result["paced"]
    stats = stack.wait_delivered(paced_result.accepted, idle_timeout=30)
    warm = [s for s in samples if s[0] >= plan.soak_seconds * 0.2] or samples
    web0, web1 = warm[0][1], warm[-1][1]
    wk0, wk1 = warm[0][2], warm[-1][2]
    backlog = max(s[3] for s in samples) if samples else 0
    web_change = (web1 - web0) / web0 * 100
    wk_change = (wk1 - wk0) / wk0 * 100
    rep.raw["soak_samples"] = samples
    rep.add(
        f"soak: {plan.soak_rate:.0f} events/s for {plan.soak_seconds:g} s: RSS web · worker (after warm-up → end)",
        f"{web0:.0f} → {web1:.0f} MB ({web_change:+.1f} %) · {wk0:.0f} → {wk1:.0f} MB ({wk_change:+.1f} %)",
        "flat (± 10 %)",
        abs(web_change) <= 10 and abs(wk_change) <= 10,
    )
    lost = paced_result.accepted - stats["unique_keys"]
    rep.add(
        "  backlog (sent - delivered), worst sample; lost; duplicates",
        f"{backlog:,} events; {lost} lost; {stats['duplicates']} duplicates; {paced_result.non_2xx} refused",
        "near zero; 0; 0",
        backlog <= plan.soak_rate and lost <= 0 and stats["duplicates"] == 0 and paced_result.non_2xx == 0,
    )


# -- one database ---------------------------------------------------------------------------------


def run_suite(args: argparse.Namespace, plan: Plan, database_url: str | None, label: str) -> Report:
    rep = Report(label)
    print(f"\n== {label} ==", flush=True)
    purge_queue(args.redis_url)
    _flush_bench_redis(args.redis_url)
    stack = Stack(args.redis_url, database_url, keep=args.keep)
    lua = lua_folder()
    prof = Profiler(Path(args.profile) / label if args.profile else None)
    try:
        stack.start_sink()
        floor = measure_floor(stack, plan, lua)
        rep.raw["floor"] = floor
        rep.add("floor: parse-only Litestar, uvicorn x 1 (same run)", f"{fmt(floor)} req/s")
        stack.write_rules(10)
        stack.start_web()
        stack.start_worker()
        asyncio.run(serial(stack.web_port, stack.hook_path, 20, body_maker("warm"), gap=0.01))
        stack.wait_delivered(20, idle_timeout=30)
        if "accept" in args.parts:
            accepted_while_delivering(stack, plan, lua, floor, rep, prof)
        if "latency" in args.parts:
            latency_paced(stack, plan, rep)
            latency_serial(stack, plan, rep)
        if "drain" in args.parts:
            d = drain(stack, plan.drain_events, prof=prof)
            rep.raw["drain"] = d
            rep.add(
                f"delivered/s, worker draining {d['queued']:,} queued events alone",
                f"{fmt(d['per_s'])} ({d['per_s'] / floor:.2f} x floor; {d['ms_per_event']:.2f} ms/event, "
                f"{d['worker_cpu_ms_per_event']:.2f} ms of worker CPU/event); "
                f"lost {d['lost']}, duplicates {d['duplicates']}",
                "≥ 2,000 and ≥ 0.5 x floor, 0 lost, 0 duplicates",
                d["per_s"] >= 2000 and d["per_s"] >= 0.5 * floor and d["lost"] == 0 and d["duplicates"] == 0,
            )
            if database_url is not None and "postgresql" in database_url:
                two = drain(stack, plan.drain_events, workers=2, label="drain2")
                ratio = two["per_s"] / d["per_s"]
                rep.add(
                    "  2 workers ÷ 1 worker, delivered/s",
                    f"{fmt(two['per_s'])} ÷ {fmt(d['per_s'])} = {ratio:.2f}; lost {two['lost']}, duplicates "
                    f"{two['duplicates']}",
                    "≥ 1.6",
                    ratio >= 1.6 and two["lost"] == 0 and two["duplicates"] == 0,
                )
                stack.stop_workers()
                stack.start_worker()
        if "stopped" in args.parts:
            stack.stop_workers()
            queued = accepted_worker_stopped(stack, plan, lua, floor, rep)
            stack.sink_reset()
            stack.start_worker()
            started = time.monotonic()
            stats = stack.wait_delivered(queued, idle_timeout=60)
            rep.add(
                "  then the worker drained that backlog",
                f"{stats['unique_keys']:,} of {queued:,} in {time.monotonic() - started:.1f} s "
                f"(duplicates {stats['duplicates']})",
            )
        if "soak" in args.parts and plan.soak_seconds > 0:
            stack.stop_workers()
            stack.stop_web()
            stack.write_rules(10)
            stack.sink_reset()
            stack.start_web()  # sends one probe event
            stack.start_worker()
            stack.wait_delivered(1, idle_timeout=10)  # the probe's delivery, before the soak counts
            soak(stack, plan, rep)
        if "rules" in args.parts:
            rule_sets(stack, plan, rep, prof)
    finally:
        stack.close()
        purge_queue(args.redis_url)
    for line in prof.headlines():
        print("  profile: " + line)
    rep.raw["profiles"] = prof.headlines()
    return rep


def _flush_bench_redis(url: str) -> None:
    import redis

    if url.rstrip("/").endswith("/0"):
        return
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def print_table(reports: list[Report], started: float) -> None:
    print("\n" + "=" * 100)
    print(f"Event Router as shipped — bench/run.py, {time.strftime('%Y-%m-%d %H:%M')}, {_machine()}")
    for rep in reports:
        print(f"\n### {rep.database}\n")
        print("| figure | value | target | met |")
        print("|---|---|---|---|")
        for row in rep.rows:
            met = "" if row.met is None else ("yes" if row.met else "**no**")
            print(f"| {row.figure} | {row.value} | {row.target} | {met} |")
    print(f"\n(run took {(time.monotonic() - started) / 60:.1f} min)")


def _machine() -> str:
    import os
    import platform

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: shorter loads and drains")
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--postgres-url", default=DEFAULT_PG, help="a PostgreSQL server; a fresh database is made on it"
    )
    parser.add_argument("--redis-url", default=DEFAULT_REDIS, help="a bench-only Redis database (flushed)")
    parser.add_argument("--soak-seconds", type=float, default=None, help="soak length (default 600, quick 20)")
    parser.add_argument(
        "--parts",
        default="accept,latency,drain,stopped,soak,rules",
        help="comma-separated parts to run: accept, latency, drain, stopped, soak, rules",
    )
    parser.add_argument("--profile", default=None, help="folder for py-spy profiles of web and worker (needs py-spy)")
    parser.add_argument("--json", default=None, help="also write every figure to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs, database)")
    args = parser.parse_args()
    args.parts = set(args.parts.split(","))
    raise_on_sigterm()
    check_redis(args.redis_url)
    started = time.monotonic()
    plan = Plan.make(args.quick, args.soak_seconds)
    reports = []
    if args.database in ("sqlite", "both"):
        reports.append(run_suite(args, plan, None, "SQLite (default)"))
    if args.database in ("postgres", "both"):
        try:
            url, name = create_pg_database(args.postgres_url)
        except Exception as exc:
            if args.database == "postgres":
                raise SystemExit(f"PostgreSQL at {args.postgres_url} is not usable: {exc}") from None
            print(f"\n(PostgreSQL skipped: {exc})")
        else:
            try:
                reports.append(run_suite(args, plan, url, "PostgreSQL"))
            finally:
                drop_pg_database(args.postgres_url, name)
    print_table(reports, started)
    if args.json:
        Path(args.json).write_text(
            json.dumps([r.__dict__ | {"rows": [x.__dict__ for x in r.rows]} for r in reports], default=str, indent=2)
        )


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"a load tool failed: {exc}\n{exc.stdout}\n{exc.stderr}") from None
