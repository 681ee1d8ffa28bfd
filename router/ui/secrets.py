"""``/settings/secrets``: secrets for rules, saved encrypted (admin).

The value field is write-only: after saving, a value is never sent to a browser again, not even
masked or as a length. Secrets the environment provides (``ROUTER_SECRET_<NAME>``) are listed by
name only, read-only.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from router.access import secretstore
from router.access.guard import principal_of
from router.errors import ClientError, SecretStoreError
from router.records.db import unit_of_work
from router.runtime import Runtime
from router.ui.flash import redirect, take
from router.ui.forms import Form, refusals
from router.ui.render import settings_page

ADMIN = {"role": "admin"}


async def _render(
    request: Request[Any, Any, Any], runtime: Runtime, *, name: str = "", status: int = 200, **outcome: str
) -> Template:
    """The page, with ``outcome`` (a notice, or a form's error and ``error_for``) and the name typed in."""
    async with runtime.sessions() as session:
        rows = await secretstore.list_secrets(session)
    env = secretstore.env_names()
    key_problem = ""
    try:
        secretstore.keyring(runtime.settings.secret_key)
    except SecretStoreError as exc:
        key_problem = str(exc)
    return settings_page(
        request,
        "settings/secrets.html",
        status=status,
        secrets=rows,
        env_names=env,
        key_problem=key_problem,
        name=name,
        **outcome,
    )


async def _refused(
    exc: ClientError,
    *,
    request: Request[Any, Any, Any],
    runtime: Runtime,
    data: dict[str, Any] | None = None,
    **_: Any,
) -> Template:
    """The page again with the error: beside the form that saved (which keeps the name typed), or on top."""
    if data is None:
        return await _render(request, runtime, error=str(exc), status=exc.status)
    name = str(data.get("name", "")).strip()
    where = "replace:" + name if data.get("replace") else "create"
    return await _render(request, runtime, error=str(exc), error_for=where, name=name, status=exc.status)


@get("/settings/secrets", include_in_schema=False, opt=ADMIN)
async def secrets_page(request: Request[Any, Any, Any], runtime: Runtime, flash: FromQuery[str] = "") -> Template:
    notice = str((await take(runtime, flash)).get("notice", ""))
    return await _render(request, runtime, notice=notice)


async def _done(request: Request[Any, Any, Any], runtime: Runtime, notice: str) -> Response[Any]:
    """After a change: 303 to the page with the notice (Post/Redirect/Get), or the page itself without Redis."""
    return await redirect(runtime, "/settings/secrets", notice=notice) or await _render(request, runtime, notice=notice)


@post("/settings/secrets", include_in_schema=False, opt=ADMIN, status_code=200)
@refusals(_refused)
async def save_secret(request: Request[Any, Any, Any], runtime: Runtime, data: Form) -> Response[Any]:
    principal = principal_of(request)
    name = str(data.get("name", "")).strip()
    value = str(data.get("value", ""))
    async with unit_of_work(runtime.sessions) as session:
        created = await secretstore.save(session, runtime.settings.secret_key, name, value, principal.actor)
    verb = "saved" if created else "replaced"
    return await _done(
        request, runtime, f"Secret {name} {verb}. Rules read it as secrets.{name}; its value is not shown again."
    )


@post("/settings/secrets/{name:str}/delete", include_in_schema=False, opt=ADMIN, status_code=200)
@refusals(_refused)
async def delete_secret(request: Request[Any, Any, Any], runtime: Runtime, name: FromPath[str]) -> Response[Any]:
    principal = principal_of(request)
    async with unit_of_work(runtime.sessions) as session:
        await secretstore.remove(session, name, principal.actor)
    return await _done(request, runtime, f"Secret {name} deleted; rules no longer get secrets.{name}.")


HANDLERS = [secrets_page, save_secret, delete_secret]
