"""``/api/me``, ``/api/users`` and ``/api/tokens``: who is signed in, user accounts and API tokens.

Thin handlers over ``router.access.accounts``; every change is audited in the same transaction.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Response
from litestar.params import JSONBody, PathParameter
from pydantic import BaseModel, ConfigDict, Field

from router.access import accounts
from router.access.auth import Role
from router.api.routes import Routes, SignedIn
from router.errors import ClientError
from router.records.db import unit_of_work
from router.runtime import Runtime

access = Routes("access")
admin = Routes("access", opt={"role": "admin"})
signed_in = Routes("access", opt={"role": "viewer"})  # signed in with any role (their own tokens)


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


@access.get("/api/me", operation_id="WhoAmI")
async def me(principal: SignedIn) -> dict[str, Any]:
    """The signed-in user and their role."""
    return {"username": principal.username, "role": principal.role, "via": principal.via}


@admin.get("/api/users", operation_id="ListUsers")
async def list_users(runtime: Runtime) -> dict[str, Any]:
    """Every user (admin)."""
    async with runtime.sessions() as session:
        return {"users": [accounts.user_dict(u) for u in await accounts.list_users(session)]}


@admin.post("/api/users", operation_id="CreateUser", status_code=201)
async def create_user(principal: SignedIn, runtime: Runtime, data: JSONBody[UserCreate]) -> Response[Any]:
    """Create a user (admin)."""
    password = data.password or accounts.generate_password()
    async with unit_of_work(runtime.sessions) as session:
        user = await accounts.add_user(session, principal.actor, data.username, password, data.role)
    body: dict[str, Any] = {"user": accounts.user_dict(user)}
    if data.password is None:
        body["password"] = password  # generated: shown this once
    return Response(body, status_code=201)


@admin.patch("/api/users/{username:str}", operation_id="UpdateUser")
async def update_user(
    principal: SignedIn,
    runtime: Runtime,
    username: Annotated[str, PathParameter(description="User name.")],
    data: JSONBody[UserPatch],
) -> Response[Any]:
    """Change a user's role, disabled flag or password (admin)."""
    change = accounts.UserChange(role=data.role, disabled=data.disabled, password=data.password)
    async with unit_of_work(runtime.sessions) as session:
        user = await accounts.change_user(session, principal.actor, username, change)
    return Response({"user": accounts.user_dict(user)})


@signed_in.get("/api/tokens", operation_id="ListTokens")
async def list_tokens(principal: SignedIn, runtime: Runtime) -> dict[str, Any]:
    """API tokens: your own, or everyone's for an admin."""
    async with runtime.sessions() as session:
        rows = await accounts.list_tokens(session, None if principal.can("admin") else principal.user_id)
    return {"tokens": [accounts.token_dict(token, name) for token, name in rows]}


@signed_in.post("/api/tokens", operation_id="CreateToken", status_code=201)
async def create_token(principal: SignedIn, runtime: Runtime, data: JSONBody[TokenCreate]) -> Response[Any]:
    """Create an API token (shown once)."""
    if data.username not in (None, principal.username) and not principal.can("admin"):
        raise ClientError(
            "username: only an admin creates tokens for other users; leave it out", status=403, title="Forbidden"
        )
    async with unit_of_work(runtime.sessions) as session:
        owner = await accounts.get_user(session, data.username or principal.username)
        row, token = await accounts.add_token(session, principal.actor, owner, data.name)
    return Response(accounts.token_dict(row, owner.username) | {"token": token}, status_code=201)


@signed_in.delete("/api/tokens/{token_id:str}", operation_id="RevokeToken")
async def revoke_token(
    principal: SignedIn,
    runtime: Runtime,
    token_id: Annotated[str, PathParameter(description="Token id (from GET /api/tokens).")],
) -> Response[Any]:
    """Revoke an API token (your own; an admin any)."""
    async with unit_of_work(runtime.sessions) as session:
        row, owner = await accounts.remove_token(session, principal, token_id)
    return Response({"token": accounts.token_dict(row, owner)})
