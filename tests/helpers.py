"""Helpers the test modules share that are not fixtures (those are in conftest.py, which re-exports some).

The signatures are computed here with hmac/hashlib, not with router.signatures.sign, so the tests check
the router against an independent reading of the senders' documentation.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.conftest import Router


def hmac_hex(secret: str | bytes, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``body`` under ``secret`` (a str is taken as UTF-8)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def github_signature(body: bytes, secret: str | bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends with ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return f"sha256={hmac_hex(secret, body)}"


def github_headers(body: bytes, secret: str, *, delivery: str = "d-1", event: str = "push") -> dict[str, str]:
    """The headers of a signed GitHub delivery of a JSON ``body``."""
    return {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": delivery,
        "x-hub-signature-256": github_signature(body, secret),
    }


async def sign_in(r: Router, username: str = "ui-admin", role: str = "admin", password: str = "ui-password-1") -> str:
    """Sign ``r.client`` in through the real form as a (new) user with ``role``; returns the session's CSRF token.

    The bearer token is dropped, so every later request is a browser-style one carrying the session cookie.
    """
    import re

    from sqlalchemy import select

    from router.access.auth import create_user
    from router.records import db
    from router.records.models import User, UserSession

    engine = db.create_engine(r.settings.database_url)
    try:
        sessions = db.sessionmaker(engine)
        async with sessions() as session:
            if await session.scalar(select(User.id).where(User.username == username)) is None:
                await create_user(session, username, password, role)
                await session.commit()
        r.client.headers.pop("authorization", None)
        form = await r.client.get("/login")
        assert form.status_code == 200, "no sign-in page: mark the test (module) with pytest.mark.ui"
        match = re.search(r'name="_csrf" value="([^"]+)"', form.text)
        assert match, form.text
        response = await r.client.post(
            "/login",
            data={"username": username, "password": password, "_csrf": match.group(1), "next": "/"},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        async with sessions() as session:
            csrf = await session.scalar(
                select(UserSession.csrf_token)
                .join(User, User.id == UserSession.user_id)
                .where(User.username == username)
                .order_by(UserSession.created_at.desc())
                .limit(1)
            )
        assert csrf
        return csrf
    finally:
        await engine.dispose()


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Serve an ASGI app with a real uvicorn on a free loopback port (in a thread); yields its base URL."""
    import threading

    import uvicorn

    from tests.conftest import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
