"""``/api/me``, ``/api/users`` and ``/api/tokens``: who is signed in, user accounts and API tokens.

Thin handlers over ``router.access.accounts``; every change is audited in the same transaction.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, delete, get, patch, post
from litestar.params import JSONBody, PathParameter
from pydantic import BaseModel, ConfigDict, Field

from router.access import accounts
from router.access.auth import Role
from router.access.guard import principal_of
from router.errors import ClientError
from router.records.db import unit_of_work
from router.runtime import Runtime

ADMIN = {"role": "admin"}
ANYONE = {"role": "viewer"}  # signed in with any role (their own tokens)


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(description="1 to 100 letters, digits and . _ @ -, starting with a letter or digit.")
    role: Role = Field(description="viewer, editor or admin.")
    password: str | None = Field(
        None, description="At least 8 characters; omit it to have one generated and returned once."
    )


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    disabled: bool | None = Field(None, description="true signs the user out everywhere and refuses their tokens.")
    password: str | None = Field(None, description="A new password; ends the user's sessions.")


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="What the token is for (1 to 100 characters).")
    username: str | None = Field(None, description="Admins only: create the token for this user.")


@get("/api/me", operation_id="WhoAmI", tags=["access"], summary="The signed-in user and their role")
async def me(request: Request[Any, Any, Any]) -> dict[str, Any]:
    principal = principal_of(request)
    return {"username": principal.username, "role": principal.role, "via": principal.via}


@get("/api/users", operation_id="ListUsers", tags=["access"], summary="Every user (admin)", opt=ADMIN)
async def list_users(runtime: Runtime) -> dict[str, Any]:
    async with runtime.sessions() as session:
        return {"users": [accounts.user_dict(u) for u in await accounts.list_users(session)]}


@post(
    "/api/users",
    operation_id="CreateUser",
    tags=["access"],
    summary="Create a user (admin)",
    opt=ADMIN,
    status_code=201,
)
async def create_user(request: Request[Any, Any, Any], runtime: Runtime, data: JSONBody[UserCreate]) -> Response[Any]:
    principal = principal_of(request)
    password = data.password or accounts.generate_password()
    async with unit_of_work(runtime.sessions) as session:
        user = await accounts.add_user(session, principal.actor, data.username, password, data.role)
    body: dict[str, Any] = {"user": accounts.user_dict(user)}
    if data.password is None:
        body["password"] = password  # generated: shown this once
    return Response(body, status_code=201)


@patch(
    "/api/users/{username:str}",
    operation_id="UpdateUser",
    tags=["access"],
    summary="Change a user's role, disabled flag or password (admin)",
    opt=ADMIN,
)
async def update_user(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    username: Annotated[str, PathParameter(description="User name.")],
    data: JSONBody[UserPatch],
) -> Response[Any]:
    principal = principal_of(request)
    change = accounts.UserChange(role=data.role, disabled=data.disabled, password=data.password)
    async with unit_of_work(runtime.sessions) as session:
        user = await accounts.change_user(session, principal.actor, username, change)
    return Response({"user": accounts.user_dict(user)})


@get(
    "/api/tokens",
    operation_id="ListTokens",
    tags=["access"],
    summary="API tokens: your own, or everyone's for an admin",
    opt=ANYONE,
)
async def list_tokens(request: Request[Any, Any, Any], runtime: Runtime) -> dict[str, Any]:
    principal = principal_of(request)
    async with runtime.sessions() as session:
        rows = await accounts.list_tokens(session, None if principal.can("admin") else principal.user_id)
    return {"tokens": [accounts.token_dict(token, name) for token, name in rows]}


@post(
    "/api/tokens",
    operation_id="CreateToken",
    tags=["access"],
    summary="Create an API token (shown once)",
    opt=ANYONE,
    status_code=201,
)
async def create_token(request: Request[Any, Any, Any], runtime: Runtime, data: JSONBody[TokenCreate]) -> Response[Any]:
    principal = principal_of(request)
    if data.username not in (None, principal.username) and not principal.can("admin"):
        raise ClientError(
            "username: only an admin creates tokens for other users; leave it out", status=403, title="Forbidden"
        )
    async with unit_of_work(runtime.sessions) as session:
        owner = await accounts.get_user(session, data.username or principal.username)
        row, token = await accounts.add_token(session, principal.actor, owner, data.name)
    return Response(accounts.token_dict(row, owner.username) | {"token": token}, status_code=201)


@delete(
    "/api/tokens/{token_id:str}",
    operation_id="RevokeToken",
    tags=["access"],
    summary="Revoke an API token (your own; an admin any)",
    opt=ANYONE,
    status_code=200,
)
async def revoke_token(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    token_id: Annotated[str, PathParameter(description="Token id (from GET /api/tokens).")],
) -> Response[Any]:
    principal = principal_of(request)
    async with unit_of_work(runtime.sessions) as session:
        row, owner = await accounts.remove_token(session, principal, token_id)
    return Response({"token": accounts.token_dict(row, owner)})
