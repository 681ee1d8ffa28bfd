"""``/settings/users``: users (admin) and everyone's own API tokens.

Plain ``<form method=post>`` pages carrying the ``_csrf`` field; each POST renders the page again with
a notice or an inline error. A new token or a generated password appears once, in that response
only (sent ``Cache-Control: no-store``), and can never be shown again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from router.access import accounts
from router.access.auth import ROLES, Principal
from router.access.guard import principal_of
from router.errors import AuthError, ClientError
from router.records.db import unit_of_work
from router.records.models import ApiToken, User
from router.runtime import Runtime
from router.ui.flash import redirect, take
from router.ui.forms import Form, refusals
from router.ui.render import settings_page

ANYONE = {"role": "viewer"}
ADMIN = {"role": "admin"}


def _field(data: dict[str, Any], name: str) -> str:
    value = data.get(name, "")
    return value.strip() if isinstance(value, str) else ""


async def _render(request: Request[Any, Any, Any], runtime: Runtime, *, status: int = 200, **outcome: str) -> Template:
    """The page, with ``outcome``: a notice, a value shown once and its label, or a form's error and ``error_for``."""
    principal = principal_of(request)
    async with runtime.sessions() as session:
        users = await accounts.list_users(session) if principal.can("admin") else []
        tokens = await accounts.list_tokens(session, None if principal.can("admin") else principal.user_id)
    if outcome.get("error") and outcome.get("error_for", "") not in _slots(users, tokens):
        outcome["error_for"] = ""  # its row is not on the page (a token revoked meanwhile): the error goes on top
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
        **outcome,
    )


def _slots(users: Sequence[User], tokens: Sequence[tuple[ApiToken, str]]) -> set[str]:
    """The places on the page a form's error can be shown beside (``error_for`` values); "" is the top."""
    return {"", "create", "token"} | {f"user:{u.username}" for u in users} | {f"token:{t.id}" for t, _ in tokens}


@get("/settings/users", include_in_schema=False, opt=ANYONE)
async def users_page(request: Request[Any, Any, Any], runtime: Runtime, flash: FromQuery[str] = "") -> Template:
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


async def _refused(
    exc: ClientError, *, request: Request[Any, Any, Any], runtime: Runtime, form: str, **arguments: Any
) -> Template:
    """The page again with the error beside the form that was sent: ``form`` names it, with the path's values."""
    return await _render(request, runtime, error=str(exc), error_for=form.format(**arguments), status=exc.status)


@post("/settings/users", include_in_schema=False, opt=ADMIN, status_code=200)
@refusals(_refused, form="create")
async def create_user(request: Request[Any, Any, Any], runtime: Runtime, data: Form) -> Response[Any]:
    principal = principal_of(request)
    username, role, password = _field(data, "username"), _field(data, "role"), _field(data, "password")
    generated = not password
    password = password or accounts.generate_password()
    async with unit_of_work(runtime.sessions) as session:
        await accounts.add_user(session, principal.actor, username, password, role)
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
@refusals(_refused, form="user:{username}")
async def change_user(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    username: FromPath[str],
    data: Form,
) -> Response[Any]:
    principal: Principal = principal_of(request)
    action = _field(data, "action")
    change, generated = _user_change(action, data)
    async with unit_of_work(runtime.sessions) as session:
        await accounts.change_user(session, principal.actor, username, change)
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
@refusals(_refused, form="token")
async def create_token(request: Request[Any, Any, Any], runtime: Runtime, data: Form) -> Response[Any]:
    principal = principal_of(request)
    async with unit_of_work(runtime.sessions) as session:
        owner = await accounts.get_user(session, principal.username)
        row, token = await accounts.add_token(session, principal.actor, owner, _field(data, "name"))
    return await _done(
        request,
        runtime,
        notice=f"Token {row.name!r} created. Copy it now: it is not shown again.",
        shown_once=token,
        shown_once_label="New API token",
    )


@post("/settings/tokens/{token_id:str}/revoke", include_in_schema=False, opt=ANYONE, status_code=200)
@refusals(_refused, form="token:{token_id}")
async def revoke_token(request: Request[Any, Any, Any], runtime: Runtime, token_id: FromPath[str]) -> Response[Any]:
    principal = principal_of(request)
    async with unit_of_work(runtime.sessions) as session:
        row, owner = await accounts.remove_token(session, principal, token_id)
    return await _done(request, runtime, notice=f"Token {row.name!r} of {owner} revoked.")


HANDLERS = [users_page, create_user, change_user, create_token, revoke_token]
