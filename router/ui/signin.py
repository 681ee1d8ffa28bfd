"""Sign-in and sign-out pages.

The sign-in form is protected from login CSRF by a double-submit cookie; the session cookie is
HttpOnly, SameSite=Lax, and Secure whenever the request came over HTTPS (or ROUTER_COOKIE_SECURE=true).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Template

from router.access import audit
from router.access.auth import authenticate_password, end_session, start_session
from router.access.guard import SESSION_COOKIE, resolve
from router.records.db import unit_of_work
from router.runtime import Runtime
from router.ui.render import page

LOGIN_CSRF_COOKIE = "router_login_csrf"


def _secure(request: Request[Any, Any, Any], runtime: Runtime) -> bool:
    setting = runtime.settings.cookie_secure
    if setting == "auto":
        return request.url.scheme == "https"
    return bool(setting == "true")


def _cookie(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    key: str,
    value: str,
    *,
    samesite: Literal["lax", "strict"],
    path: str,
    max_age: int | None = None,
) -> Cookie:
    """A cookie scripts cannot read, Secure whenever the request came over HTTPS (``_secure``)."""
    secure = _secure(request, runtime)
    return Cookie(key=key, value=value, httponly=True, samesite=samesite, secure=secure, path=path, max_age=max_age)


def _client(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else ""


def safe_next(target: str) -> str:
    """Only a local path: never an open redirect."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _login_page(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    *,
    error: str = "",
    status: int = 200,
    nxt: str = "/",
    username: str = "",
) -> Template:
    token = secrets.token_urlsafe(24)
    response = page(
        request,
        "login.html",
        status=status,
        error=error,
        login_csrf=token,
        next=safe_next(nxt),
        username=username[:100],
    )
    response.cookies.append(_cookie(request, runtime, LOGIN_CSRF_COOKIE, token, samesite="strict", path="/login"))
    return response


@get("/login", opt={"public": True}, include_in_schema=False)
async def login_form(request: Request[Any, Any, Any], runtime: Runtime, next: FromQuery[str] = "/") -> Response[Any]:
    if await resolve(request) is not None:
        return Redirect(safe_next(next))
    return _login_page(request, runtime, nxt=next)


@post("/login", opt={"public": True}, include_in_schema=False, status_code=303)
async def login(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Response[Any]:
    sent = data.get("_csrf", "")
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    nxt = safe_next(data.get("next", "/"))
    if not sent or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        return _login_page(request, runtime, error="The form expired; sign in again.", status=403, nxt=nxt)
    username = data.get("username", "").strip()
    async with runtime.sessions() as session:
        user = await authenticate_password(session, username, data.get("password", ""))
        if user is None:
            # the actor is never the name typed in: anyone could type "cli:root" or "alice (session)"
            audit.record(session, "anonymous", "sign_in_failed", username[:100], {"client": _client(request)})
            await session.commit()
            return _login_page(
                request, runtime, error="Wrong user name or password.", status=401, nxt=nxt, username=username
            )
        cookie, _csrf = await start_session(session, user, runtime.settings.session_hours)
        audit.record(session, f"{user.username} (session)", "sign_in", user.username, {"client": _client(request)})
        await session.commit()
    response: Response[Any] = Redirect(nxt, status_code=303)
    lasts = int(runtime.settings.session_hours * 3600)
    response.cookies.append(_cookie(request, runtime, SESSION_COOKIE, cookie, samesite="lax", path="/", max_age=lasts))
    response.cookies.append(Cookie(key=LOGIN_CSRF_COOKIE, value="", max_age=0, path="/login"))
    return response


@post("/logout", include_in_schema=False, status_code=303, opt={"role": "viewer"})
async def logout(request: Request[Any, Any, Any], runtime: Runtime) -> Response[Any]:
    cookie = request.cookies.get(SESSION_COOKIE, "")
    async with unit_of_work(runtime.sessions) as session:
        principal = await resolve(request)
        await end_session(session, cookie)
        if principal is not None:
            audit.record(session, principal.actor, "sign_out", principal.username)
    response: Response[Any] = Redirect("/login", status_code=303)
    response.cookies.append(Cookie(key=SESSION_COOKIE, value="", max_age=0, path="/"))
    return response
