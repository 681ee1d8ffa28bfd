"""Shared by the benchmarks: child processes stopped by PID, readiness waits, payloads, the load loop, stats.

Everything talks to 127.0.0.1 only, and every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

T = TypeVar("T")
HOST = "127.0.0.1"


_handed_out: set[int] = set()  # ports this process already gave out: a caller may not have bound them yet


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range (32768 and up by default).

    A port the kernel hands out for ``bind(0)`` is from the range it also gives outgoing connections,
    so with many connections open (a worker's keep-alive pool) another socket can take it between our
    probe and the server's bind; ports below the range are only ever taken on purpose. A port is
    never handed out twice by one process: callers often ask for several (a sink on 61 ports) before
    anything binds them, and a probe alone cannot see a port that is promised but not yet bound.
    """
    for _ in range(200):
        port = random.randrange(20000, 32000)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # the low range is crowded: fall back to the kernel's choice
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def router_exe() -> list[str]:
    """How to run the `router` CLI of the Python running this script."""
    found = shutil.which("router", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "router"]


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run with uvloop when installed: the load generator shares the CPU with the server."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def api_token(database_url: str, username: str = "bench") -> str:
    """An admin API token for the management API of the stack on ``database_url`` (migrates it first)."""
    from sqlalchemy import select

    from router.access.auth import create_token, create_user
    from router.records import db
    from router.records.models import User

    async def make() -> str:
        engine = db.create_engine(database_url)
        try:
            await db.migrate(engine)
            async with db.sessionmaker(engine)() as session:
                user = await session.scalar(select(User).where(User.username == username))
                if user is None:
                    user = await create_user(session, username, uuid.uuid4().hex, "admin")
                _row, token = await create_token(session, user, "bench")
                await session.commit()
            return token
        finally:
            await engine.dispose()

    return run_async(make())


def raise_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so `finally:` blocks stop the children."""

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# -- child processes -----------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Children:
    """Child processes, each the leader of its own process group; stopped by PID, newest first."""

    logdir: Path
    items: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path | None = None) -> Child:
        log = self.logdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: uvicorn's worker processes go with it
            )
        child = Child(name, proc, log)
        self.items.append(child)
        return child

    def check_alive(self) -> None:
        for child in self.items:
            code = child.proc.poll()
            if code is not None:
                raise RuntimeError(f"{child.name} (pid {child.pid}) exited with {code}:\n{child.tail()}")

    def stop(self, child: Child, timeout: float = 15.0) -> None:
        """SIGTERM the child by PID; after `timeout`, SIGKILL its process group (same id, made for it)."""
        if child.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
            try:
                child.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"  {child.name} (pid {child.pid}) ignored SIGTERM for {timeout:g} s; killing", file=sys.stderr)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.proc.wait(5)
        # uvicorn's worker processes share the group; any left after their parent exited go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        while self.items:
            self.stop(self.items.pop())


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes in a process group (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # fields after "(comm)": state ppid pgrp ... utime(11) stime(12)
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def wait_until(check: Callable[[], bool], timeout: float, what: str, children: Children | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if children is not None:
            children.check_alive()
        if check():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:g} s")
        time.sleep(0.1)


@functools.cache
def http() -> httpx.Client:
    """One client for the bench's own polling: `httpx.get` builds a new client (and TLS context, ~10 ms
    of CPU) per call, which, polled during a drain, takes CPU from the processes being measured."""
    client = httpx.Client(timeout=5.0)
    atexit.register(client.close)
    return client


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return http().get(url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def run_router(args: list[str], env: Mapping[str, str], timeout: float = 120.0) -> None:
    """Run a one-shot `router ...` command (such as `db upgrade`), failing loudly."""
    done = subprocess.run(
        [*router_exe(), *args], env=dict(env), stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"router {' '.join(args)} failed:\n{done.stdout.decode()}{done.stderr.decode()}")


def router_env(database_url: str, redis_url: str, rules_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
    env.update(
        ROUTER_DATABASE_URL=database_url,
        ROUTER_REDIS_URL=redis_url,
        ROUTER_RULES_DIR=str(rules_dir),
        ROUTER_EGRESS_ALLOW="127.0.0.0/8,::1",  # the sink is on loopback
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


# -- Redis and the database ----------------------------------------------------------------------


def check_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise SystemExit(f"Redis at {url} does not answer ({exc}); start it or pass --redis-url") from None
    finally:
        client.close()


def purge_queue(url: str) -> int:
    """Delete the arq queue and job keys in a bench-only Redis database (never database 0)."""
    import redis

    db = int(urlsplit(url).path.lstrip("/") or 0)
    if db == 0:
        print("  note: not purging Redis database 0; use a bench-only database (--redis-url .../9)", file=sys.stderr)
        return 0
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = [k for pattern in ("arq:*", "router:queue*") for k in client.scan_iter(match=pattern, count=1000)]
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
        return len(keys)
    finally:
        client.close()


async def count_events(database_url: str, sources: list[str]) -> dict[str, int]:
    from sqlalchemy import func, select

    from router.records import db
    from router.records.models import Event

    engine = db.create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(Event.source, func.count()).where(Event.source.in_(sources)).group_by(Event.source)
            )
            found = {str(source): int(n) for source, n in rows}
    finally:
        await engine.dispose()
    return {s: found.get(s, 0) for s in sources}


async def delete_events(database_url: str, sources: list[str]) -> None:
    """Remove this run's events (and, by cascade, their runs) from a database the bench did not create."""
    from sqlalchemy import delete

    from router.records import db
    from router.records.models import Event, Run

    engine = db.create_engine(database_url)
    try:
        async with engine.begin() as conn:
            ids = Event.__table__.select().with_only_columns(Event.id).where(Event.source.in_(sources))
            await conn.execute(delete(Run).where(Run.event_id.in_(ids)))  # SQLite may not enforce the cascade
            await conn.execute(delete(Event).where(Event.source.in_(sources)))
    finally:
        await engine.dispose()


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


# -- payloads ------------------------------------------------------------------------------------


def payload_template() -> dict[str, Any]:
    """A GitHub push of one commit with a bench id: about 1.3 KB as compact JSON, a typical webhook size.

    Kept here rather than read from samples/, so the figures stay comparable when the samples change.
    """
    sha = "59b20b8d5c6ff8d09518216e4ea6d9ac46d1f4b5"
    author = {"name": "Mona Octocat", "email": "octocat@github.com", "username": "octocat"}
    commit = {
        "id": sha,
        "message": "Fix the build: pin the toolchain and retry flaky downloads",
        "timestamp": "2026-11-25T10:15:00Z",
        "url": f"https://github.com/octo-org/event-router/commit/{sha}",
        "author": author,
        "modified": ["ci/build.sh", "README.md"],
    }
    return {
        "ref": "refs/heads/main",
        "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "after": sha,
        "created": False,
        "deleted": False,
        "forced": False,
        "compare": "https://github.com/octo-org/event-router/compare/6113728f27ae...59b20b8d5c6f",
        "repository": {
            "id": 186853002,
            "name": "event-router",
            "full_name": "octo-org/event-router",
            "private": False,
            "default_branch": "main",
            "html_url": "https://github.com/octo-org/event-router",
        },
        "pusher": {"name": "octocat", "email": "octocat@github.com"},
        "sender": {"login": "octocat", "id": 583231, "type": "User"},
        "commits": [commit],
        "head_commit": commit,
        "bench_id": "0" * 32,
    }


class Payloads:
    """Unique bodies: the template with its bench_id replaced; ~1.3 KB each."""

    def __init__(self) -> None:
        text = json.dumps(payload_template(), separators=(",", ":"))
        self.head, _, self.tail = text.partition("0" * 32)

    def make(self) -> tuple[str, bytes]:
        bench_id = uuid.uuid4().hex
        return bench_id, (self.head + bench_id + self.tail).encode()

    @property
    def size(self) -> int:
        return len(self.head) + 32 + len(self.tail)


# -- load ----------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    seconds: float = 0.0
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # seconds, of answered requests

    @property
    def accepted(self) -> int:
        return self.statuses.get(202, 0)

    @property
    def non_2xx(self) -> int:
        return sum(n for code, n in self.statuses.items() if not 200 <= code < 300)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


Send = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


async def closed_loop(
    make_send: Callable[[], Send],
    *,
    concurrency: int,
    seconds: float,
    requests: int | None = None,
    rate: float | None = None,
) -> LoadResult:
    """`concurrency` connections, each sending its next request when the last is answered.

    Stops issuing after `seconds` (or `requests` in all), then waits for the answers in flight, so every
    request is either answered or counted as an error. With `rate`, sends are paced to that many per
    second in all (open loop, capped at `concurrency` in flight).
    """
    result = LoadResult()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    timeout = httpx.Timeout(60.0, connect=10.0)
    issued = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal issued
        while True:
            now = time.perf_counter()
            if now >= deadline or (requests is not None and issued >= requests):
                return
            index = issued
            issued += 1
            if rate:
                due = start + index / rate
                if due > now:
                    await asyncio.sleep(due - now)
                    if time.perf_counter() >= deadline:
                        return
            send = make_send()
            result.sent += 1
            t0 = time.perf_counter()
            try:
                response = await send(client)
            except httpx.HTTPError as exc:
                result.errors[type(exc).__name__] += 1
                continue
            result.latencies.append(time.perf_counter() - t0)
            result.statuses[response.status_code] += 1

    # One client (and pool) per connection: a single AsyncClient shared by many connections spends
    # CPU per request that grows with its pool (measured here: 0.45 ms at 8 connections, 4.5 ms at 64).
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(limits=limits, timeout=timeout))
            for _ in range(concurrency)
        ]
        await asyncio.gather(*(one(client) for client in clients))
    result.seconds = time.perf_counter() - start
    return result


# -- statistics ----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def ms(value: float) -> str:
    return "n/a" if value != value else f"{value * 1000:.1f} ms"


@contextlib.contextmanager
def stopping(children: Children) -> Iterator[Children]:
    try:
        yield children
    finally:
        children.stop_all()
