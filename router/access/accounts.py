"""Managing users and API tokens: the operations the API, the UI and the CLI share, each audited.

Every function here makes its change and adds the audit entry to the same session; the caller
commits both together. A user-caused problem raises ``AuthError`` with a message naming the field
and the fix. The last enabled admin can be neither disabled nor demoted, so the router always keeps
someone who can manage it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from router.access import audit
from router.access.auth import Principal, check_role, create_token, create_user, hash_password, revoke_token
from router.access.auth import check_password as _check_password
from router.errors import ConflictError, NotFoundError
from router.records.models import ApiToken, User, UserSession
from router.records.serialize import fields


def generate_password() -> str:
    """A random password of 20 URL-safe characters (about 120 bits)."""
    return secrets.token_urlsafe(15)


def user_dict(user: User) -> dict[str, Any]:
    return fields(user, "id username role disabled created_at")


def token_dict(token: ApiToken, username: str) -> dict[str, Any]:
    """A token's metadata; the token itself is never stored, so it cannot be listed."""
    return {
        **fields(token, "id name"),
        "username": username,
        **fields(token, "prefix created_at last_used_at revoked_at"),
    }


async def get_user(session: AsyncSession, username: str) -> User:
    user = await session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFoundError(f"username: no user {username!r}; `router user list` shows who exists")
    return user


async def list_users(session: AsyncSession) -> list[User]:
    return list((await session.scalars(select(User).order_by(User.username))).all())


async def add_user(session: AsyncSession, actor: str, username: str, password: str, role: str) -> User:
    if await session.scalar(select(User.id).where(User.username == username)) is not None:
        raise ConflictError(f"username: {username!r} already exists; pick another or change its password")
    user = await create_user(session, username, password, role)
    audit.record(session, actor, "user_create", username, {"role": role})
    return user


async def _other_admins(session: AsyncSession, user: User) -> int:
    count = await session.scalar(
        select(func.count()).select_from(User).where(User.role == "admin", User.disabled.is_(False), User.id != user.id)
    )
    return int(count or 0)


@dataclass(frozen=True)
class UserChange:
    """What to change about a user; ``None`` leaves a field as it is."""

    role: str | None = None
    disabled: bool | None = None
    password: str | None = None


async def change_user(session: AsyncSession, actor: str, username: str, change: UserChange) -> User:
    """Change a user's role, disabled flag or password. Disabling or a new password ends their sessions."""
    user = await get_user(session, username)
    if change.role is not None:
        check_role(change.role)
    if change.password is not None:
        _check_password(change.password)
    losing_admin = user.role == "admin" and not user.disabled
    losing_admin = losing_admin and ((change.role not in (None, "admin")) or change.disabled is True)
    if losing_admin and await _other_admins(session, user) == 0:
        raise ConflictError(
            f"{username!r} is the last enabled admin: make another user admin first, "
            "or nobody could manage users and secrets any more"
        )
    detail: dict[str, Any] = {}
    if change.role is not None and change.role != user.role:
        detail["role"] = {"from": user.role, "to": change.role}
        user.role = change.role
    if change.disabled is not None and change.disabled != user.disabled:
        detail["disabled"] = change.disabled
        user.disabled = change.disabled
    if change.password is not None:
        user.password_hash = await hash_password(change.password)
        detail["password"] = "changed"
    if change.disabled or change.password is not None:
        await session.execute(delete(UserSession).where(UserSession.user_id == user.id))
        detail["sessions_ended"] = True
    if detail:
        audit.record(session, actor, "user_update", username, detail)
    return user


async def list_tokens(session: AsyncSession, user_id: str | None = None) -> list[tuple[ApiToken, str]]:
    """Tokens with their owner's name, newest first; only ``user_id``'s when given."""
    query = select(ApiToken, User.username).join(User, User.id == ApiToken.user_id).order_by(ApiToken.created_at.desc())
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    return [(token, name) for token, name in (await session.execute(query)).all()]


async def add_token(session: AsyncSession, actor: str, user: User, name: str) -> tuple[ApiToken, str]:
    """A new token for ``user``; returns the row and the token (shown once, never stored)."""
    row, token = await create_token(session, user, name)
    audit.record(session, actor, "token_create", user.username, {"token_id": row.id, "name": row.name})
    return row, token


async def remove_token(session: AsyncSession, who: Principal | str, token_id: str) -> tuple[ApiToken, str]:
    """Revoke a token; returns it and its owner's name. A non-admin Principal may revoke only their own."""
    row = await session.get(ApiToken, token_id)
    if isinstance(who, Principal) and row is not None and not who.can("admin") and row.user_id != who.user_id:
        row = None  # someone else's token: as if it did not exist
    if row is None:
        raise NotFoundError(f"token: no token with id {token_id!r}; list them with GET /api/tokens")
    if row.revoked_at is not None:
        raise ConflictError(f"token: {token_id!r} ({row.name}) is already revoked")
    await revoke_token(session, token_id)
    await session.refresh(row)
    owner = await session.get(User, row.user_id)
    username = owner.username if owner else row.user_id
    actor = who.actor if isinstance(who, Principal) else who
    audit.record(session, actor, "token_revoke", username, {"token_id": row.id, "name": row.name})
    return row, username
