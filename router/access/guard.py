"""Who may do what: one guard for every route, and the security headers on every response.

Every handler needs a signed-in user or an API token unless it is marked ``opt={"public": True}``
(ingest, the inbox catcher, health, sign-in, static files). Reading needs ``viewer``; changing needs
``editor`` unless the handler asks for more with ``opt={"role": "admin"}``. A browser session must
also send its CSRF token (``X-CSRF-Token`` header or ``_csrf`` form field) with every change; API
tokens are not sent by browsers on their own, so they need none.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Message, Scope

from router.access.auth import Principal, Role, principal_from_session, principal_from_token
from router.api.apidocs import style_sources

SESSION_COOKIE = "router_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


async def resolve(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """The principal behind this request (cached on it), from a bearer token or the session cookie."""
    state = connection.scope.setdefault("state", {})
    if "principal" in state:
        found: Principal | None = state["principal"]
        return found
    principal: Principal | None = None
    authorization = connection.headers.get("authorization", "")
    sessions = connection.app.state.sessions
    async with sessions() as session:
        if authorization[:7].lower() == "bearer ":
            principal = await principal_from_token(session, authorization[7:].strip())
        elif cookie := connection.cookies.get(SESSION_COOKIE):
            principal = await principal_from_session(session, cookie)
    state["principal"] = principal
    return principal


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    """The principal the guard admitted (handlers that are not public only)."""
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    if principal is None:  # the guard runs first; this is a wiring mistake, not a user's
        raise NotAuthorizedException("not signed in")
    return principal


async def authorize(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The guard of every route but ingest (which its source's signature scheme authenticates)."""
    if handler.opt.get("public") or connection.scope["path"].startswith("/schema"):  # OpenAPI: public
        return
    principal = await resolve(connection)
    if principal is None:
        raise NotAuthorizedException("sign in, or send an API token as `Authorization: Bearer <token>`")
    method = connection.scope.get("method", "GET")
    need: Role = handler.opt.get("role") or ("viewer" if method in SAFE_METHODS else "editor")
    if not principal.can(need):
        raise PermissionDeniedException(f"this needs the {need} role; {principal.username} is {principal.role}")
    if principal.via == "session" and method not in SAFE_METHODS:
        await check_csrf(connection, principal.csrf_token or "")


async def check_csrf(connection: ASGIConnection[Any, Any, Any, Any], expected: str) -> None:
    sent = connection.headers.get("x-csrf-token")
    if sent is None and isinstance(connection, Request):
        content_type = connection.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            value = (await connection.form()).get("_csrf")
            sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise PermissionDeniedException("missing or wrong CSRF token; reload the page and try again")


async def security_headers(message: Message, scope: Scope) -> None:
    """A ``before_send`` hook: CSP and friends on every response, also the 404 of an unknown path and the
    API reference at /schema (whose page may add a nonce for the styles its viewer creates). Async, so
    Litestar calls it in place rather than handing each response to a thread."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers", []))
    names = {name.lower() for name, _ in headers}
    headers.extend(h for h in _HEADERS if h[0] not in names)
    if b"content-security-policy" not in names:
        extra = style_sources(scope)
        policy = CSP.replace("style-src 'self'", f"style-src 'self' {extra}") if extra else CSP
        headers.append((b"content-security-policy", policy.encode()))
    message["headers"] = headers
