"""The processes bench/run.py measures, started the way a user starts them.

`router serve` and `router worker` run with default settings in a scratch folder of their own (so the
database is the default `./data/router.db` and the rules the default `./rules`), with two exceptions a
benchmark needs: ROUTER_REDIS_URL names a bench-only Redis database, and ROUTER_EGRESS_ALLOW lets steps
reach the loopback sink. ``--database-url`` adds ROUTER_DATABASE_URL for PostgreSQL runs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _common import HOST, Child, Children, free_port, http, http_ok, router_exe, wait_until
from _rulesets import SOURCE, write_rules

BENCH_DIR = Path(__file__).resolve().parent


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn with --workers forks), in MB."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class Stack:
    """A scratch folder, a sink, and the router's processes; every child is stopped by PID at the end."""

    def __init__(self, redis_url: str, database_url: str | None = None, keep: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="router-bench-"))
        self.rules_dir = self.root / "rules"
        self.children = Children(self.root)
        self.redis_url = redis_url
        self.database_url = database_url
        self.keep = keep
        self.sink_port = free_port()
        self.web_port = free_port()
        self.web: Child | None = None
        self.workers: list[Child] = []
        self.sink: Child | None = None

    # -- environment -----------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
        env.update(ROUTER_REDIS_URL=self.redis_url, ROUTER_EGRESS_ALLOW="127.0.0.1", PYTHONUNBUFFERED="1")
        if self.database_url:
            env["ROUTER_DATABASE_URL"] = self.database_url
        return env

    @property
    def sink_url(self) -> str:
        return f"http://{HOST}:{self.sink_port}/deliver"

    @property
    def web_url(self) -> str:
        return f"http://{HOST}:{self.web_port}"

    @property
    def hook_path(self) -> str:
        return f"/hooks/{SOURCE}"

    # -- processes -------------------------------------------------------------------------------
    def start_sink(self) -> None:
        argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH_DIR), "_sink:app", "--port"]
        argv += [str(self.sink_port), "--log-level", "warning", "--no-access-log", "--lifespan", "off"]
        self.sink = self.children.start("sink", argv, self.env(), cwd=self.root)
        wait_until(http_ok(f"http://{HOST}:{self.sink_port}/count"), 20, "the sink", self.children)

    def start_floor(self) -> tuple[Child, int]:
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH_DIR), "_floor:app", "--port", str(port)]
        argv += ["--log-level", "warning", "--no-access-log"]
        child = self.children.start("floor", argv, self.env(), cwd=self.root)
        wait_until(lambda: _posts(port, "/hooks/floor"), 30, "the floor app", self.children)
        return child, port

    def write_rules(self, count: int) -> Path:
        return write_rules(self.rules_dir, count, self.sink_url)

    def start_web(self, timeout: float = 180.0) -> float:
        """Start `router serve`; return the seconds until it accepted its first webhook (2xx)."""
        started = time.monotonic()
        argv = [*router_exe(), "serve", "--port", str(self.web_port)]
        self.web = self.children.start("web", argv, self.env(), cwd=self.root)
        wait_until(lambda: _posts(self.web_port, self.hook_path), timeout, "router serve", self.children)
        return time.monotonic() - started

    def start_worker(self, name: str = "worker") -> Child:
        child = self.children.start(name, [*router_exe(), "worker"], self.env(), cwd=self.root)
        self.workers.append(child)
        return child

    def stop_workers(self) -> None:
        while self.workers:
            self.stop(self.workers.pop())

    def stop_web(self) -> None:
        if self.web is not None:
            self.stop(self.web)
            self.web = None

    def stop(self, child: Child) -> None:
        self.children.stop(child)
        if child in self.children.items:
            self.children.items.remove(child)

    def close(self) -> None:
        self.children.stop_all()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- the database ----------------------------------------------------------------------------
    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.root / 'data' / 'router.db'}"

    def event_count(self) -> int:
        """Events stored so far (the authoritative count of what was accepted)."""
        from _common import count_events, run_async

        return run_async(count_events(self.db_url, [SOURCE]))[SOURCE]

    # -- the sink --------------------------------------------------------------------------------
    def sink_reset(self) -> None:
        http().post(f"http://{HOST}:{self.sink_port}/reset")

    def sink_stats(self) -> dict[str, Any]:
        data: dict[str, Any] = http().get(f"http://{HOST}:{self.sink_port}/stats", timeout=30).json()
        return data

    def sink_count(self) -> int:
        return int(http().get(f"http://{HOST}:{self.sink_port}/count").json()["deliveries"])

    def wait_delivered(
        self, expected: int, idle_timeout: float = 30.0, max_seconds: float | None = None
    ) -> dict[str, Any]:
        """Wait until the sink has ``expected`` distinct deliveries, nothing arrived for ``idle_timeout``, or
        ``max_seconds`` passed (a time-boxed measurement of a slow path)."""
        started = last_change = time.monotonic()
        last = -1
        while True:
            self.children.check_alive()
            count = self.sink_count()
            if count != last:
                last, last_change = count, time.monotonic()
            if count >= expected or time.monotonic() - last_change > idle_timeout:
                break
            if max_seconds is not None and time.monotonic() - started > max_seconds:
                break
            time.sleep(0.2)
        time.sleep(0.5)  # late duplicates, if any, arrive too
        return self.sink_stats()


def _posts(port: int, path: str) -> bool:
    """True once POST path answers 2xx (a probe event with a unique id)."""
    from _load import event_bytes

    try:
        response = http().post(
            f"http://{HOST}:{port}{path}",
            content=event_bytes(f"evt_probe_{uuid.uuid4().hex}"),
            headers={"content-type": "application/json"},
            timeout=2.0,
        )
    except Exception:
        return False
    return 200 <= response.status_code < 300


def create_pg_database(admin_url: str) -> tuple[str, str]:
    """A fresh PostgreSQL database for one run: (SQLAlchemy URL, name)."""
    import asyncpg

    name = f"router_bench_{uuid.uuid4().hex[:8]}"
    plain = admin_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    async def run() -> None:
        conn = await asyncpg.connect(plain, timeout=5)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(run())
    base = plain.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}", name


def drop_pg_database(admin_url: str, name: str) -> None:
    import asyncpg

    plain = admin_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    async def run() -> None:
        conn = await asyncpg.connect(plain, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(run())


def router_check_seconds(rules_dir: Path, env: dict[str, str]) -> tuple[float, bool]:
    started = time.monotonic()
    done = subprocess.run(
        [*router_exe(), "check", str(rules_dir)], env=env, capture_output=True, text=True, timeout=900
    )
    return time.monotonic() - started, done.returncode == 0
