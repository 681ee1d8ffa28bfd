"""``/settings/users``: users (admin) and everyone's own API tokens.

Plain ``<form method=post>`` pages carrying the ``_csrf`` field; each POST renders the page again with
a notice or an inline error. A new token or a generated password appears once, in that response
only (sent ``Cache-Control: no-store``), and can never be shown again.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, PathParameter, QueryParameter
from litestar.response import Template

from router.access import accounts
from router.access.auth import ROLES, Principal
from router.access.guard import principal_of
from router.errors import AuthError
from router.records.db import unit_of_work
from router.runtime import Runtime
from router.ui.flash import redirect, take
from router.ui.render import settings_page

Form = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]
ANYONE = {"role": "viewer"}
ADMIN = {"role": "admin"}


def _field(data: dict[str, Any], name: str) -> str:
    value = data.get(name, "")
    return value.strip() if isinstance(value, str) else ""


async def _render(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    *,
    notice: str = "",
    shown_once: str = "",
    shown_once_label: str = "",
    error: str = "",
    error_for: str = "",
    status: int = 200,
) -> Template:
    principal = principal_of(request)
    async with runtime.sessions() as session:
        users = await accounts.list_users(session) if principal.can("admin") else []
        tokens = await accounts.list_tokens(session, None if principal.can("admin") else principal.user_id)
    mine = [(t, n) for t, n in tokens if t.user_id == principal.user_id]
    others = [(t, n) for t, n in tokens if t.user_id != principal.user_id]
    return settings_page(
        request,
        "settings/users.html",
        status=status,
        users=users,
        roles=ROLES,
        my_tokens=mine,
        other_tokens=others,
        notice=notice,
        shown_once=shown_once,
        shown_once_label=shown_once_label,
        error=error,
        error_for=error_for,
    )


@get("/settings/users", include_in_schema=False, opt=ANYONE)
async def users_page(
    request: Request[Any, Any, Any], runtime: Runtime, flash: Annotated[str, QueryParameter()] = ""
) -> Template:
    shown = await take(runtime, flash)
    notice, once, label = (str(shown.get(k, "")) for k in ("notice", "shown_once", "shown_once_label"))
    return await _render(request, runtime, notice=notice, shown_once=once, shown_once_label=label)


async def _done(
    request: Request[Any, Any, Any], runtime: Runtime, *, notice: str, shown_once: str = "", shown_once_label: str = ""
) -> Response[Any]:
    """After a change: 303 to the page with the outcome (Post/Redirect/Get), or the page itself without Redis."""
    outcome = {"notice": notice, "shown_once": shown_once, "shown_once_label": shown_once_label}
    return await redirect(runtime, "/settings/users", **outcome) or await _render(
        request, runtime, notice=notice, shown_once=shown_once, shown_once_label=shown_once_label
    )


@post("/settings/users", include_in_schema=False, opt=ADMIN, status_code=200)
async def create_user(request: Request[Any, Any, Any], runtime: Runtime, data: Form) -> Response[Any]:
    principal = principal_of(request)
    username, role, password = _field(data, "username"), _field(data, "role"), _field(data, "password")
    generated = not password
    password = password or accounts.generate_password()
    try:
        async with unit_of_work(runtime.sessions) as session:
            await accounts.add_user(session, principal.actor, username, password, role)
    except AuthError as exc:
        return await _render(request, runtime, error=str(exc), error_for="create", status=exc.status)
    if generated:
        return await _done(
            request,
            runtime,
            notice=f"User {username} ({role}) created. Give them this password; it is not shown again:",
            shown_once=password,
            shown_once_label=f"Password of {username}",
        )
    return await _done(request, runtime, notice=f"User {username} ({role}) created.")


def _user_change(action: str, data: dict[str, Any]) -> tuple[accounts.UserChange, str]:
    """The change a user-row form asks for, and a generated password ('' when none)."""
    if action == "role":
        return accounts.UserChange(role=_field(data, "role")), ""
    if action in ("disable", "enable"):
        return accounts.UserChange(disabled=action == "disable"), ""
    if action == "password":
        given = _field(data, "password")
        password = given or accounts.generate_password()
        return accounts.UserChange(password=password), "" if given else password
    raise AuthError(f"action: {action!r} is not one of role, disable, enable, password")


@post("/settings/users/{username:str}", include_in_schema=False, opt=ADMIN, status_code=200)
async def change_user(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    username: Annotated[str, PathParameter()],
    data: Form,
) -> Response[Any]:
    principal: Principal = principal_of(request)
    action = _field(data, "action")
    try:
        change, generated = _user_change(action, data)
        async with unit_of_work(runtime.sessions) as session:
            await accounts.change_user(session, principal.actor, username, change)
    except AuthError as exc:
        return await _render(request, runtime, error=str(exc), error_for=f"user:{username}", status=exc.status)
    if generated:
        return await _done(
            request,
            runtime,
            notice=f"New password for {username}; their sessions ended. It is not shown again:",
            shown_once=generated,
            shown_once_label=f"Password of {username}",
        )
    done = {
        "role": f"{username} is now {change.role}.",
        "disable": f"{username} is disabled: signed out everywhere, tokens refused.",
        "enable": f"{username} is enabled again.",
        "password": f"Password of {username} changed; their sessions ended.",
    }[action]
    return await _done(request, runtime, notice=done)


@post("/settings/tokens", include_in_schema=False, opt=ANYONE, status_code=200)
async def create_token(request: Request[Any, Any, Any], runtime: Runtime, data: Form) -> Response[Any]:
    principal = principal_of(request)
    try:
        async with unit_of_work(runtime.sessions) as session:
            owner = await accounts.get_user(session, principal.username)
            row, token = await accounts.add_token(session, principal.actor, owner, _field(data, "name"))
    except AuthError as exc:
        return await _render(request, runtime, error=str(exc), error_for="token", status=exc.status)
    return await _done(
        request,
        runtime,
        notice=f"Token {row.name!r} created. Copy it now: it is not shown again.",
        shown_once=token,
        shown_once_label="New API token",
    )


@post("/settings/tokens/{token_id:str}/revoke", include_in_schema=False, opt=ANYONE, status_code=200)
async def revoke_token(
    request: Request[Any, Any, Any], runtime: Runtime, token_id: Annotated[str, PathParameter()]
) -> Response[Any]:
    principal = principal_of(request)
    try:
        async with unit_of_work(runtime.sessions) as session:
            row, owner = await accounts.remove_token(session, principal, token_id)
    except AuthError as exc:
        return await _render(request, runtime, error=str(exc), error_for=f"token:{token_id}", status=exc.status)
    return await _done(request, runtime, notice=f"Token {row.name!r} of {owner} revoked.")


HANDLERS = [users_page, create_user, change_user, create_token, revoke_token]
