"""Users, passwords, API tokens and browser sessions.

Passwords are hashed with argon2id (argon2-cffi); API tokens and session ids are random 32-byte values
of which only the SHA-256 is stored, so a copy of the database signs no one in. Roles are ordered:
``viewer`` reads, ``editor`` also changes rules and replays, ``admin`` does everything.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from router.errors import AuthError
from router.records.models import ApiToken, User, UserSession, new_id, utcnow

Role = Literal["viewer", "editor", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "editor", "admin")
TOKEN_PREFIX = "ert_"
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
MIN_PASSWORD = 8

_hasher = PasswordHasher()
# verifying against this when the user does not exist keeps the time of a failed sign-in the same
_DUMMY_HASH = _hasher.hash("not a real password")


@dataclass(frozen=True)
class Principal:
    """Who is making a request, and how they proved it."""

    user_id: str
    username: str
    role: Role
    via: Literal["session", "token", "cli"]
    csrf_token: str | None = None

    def can(self, role: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def actor(self) -> str:
        return f"{self.username} ({self.via})"


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise AuthError(f"role: {role!r} is not a role; use one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"password: too short; use at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise AuthError("password: longer than 1024 characters")


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_hasher.hash, password)


async def _verify(hashed: str, password: str) -> bool:
    def run() -> bool:
        try:
            return _hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False

    return await anyio.to_thread.run_sync(run)


async def create_user(session: AsyncSession, username: str, password: str, role: str) -> User:
    """Add a user (the caller commits). Raises AuthError naming the field at fault."""
    if not USERNAME.match(username):
        raise AuthError(
            f"username: {username!r} is not valid; use up to 100 letters, digits and . _ @ -, "
            "starting with a letter or digit"
        )
    check_role(role)
    check_password(password)
    if await session.scalar(select(User.id).where(User.username == username)) is not None:
        raise AuthError(f"username: {username!r} already exists; pick another or change its password")
    user = User(id=new_id(), username=username, password_hash=await hash_password(password), role=role)
    session.add(user)
    await session.flush()
    return user


async def set_password(session: AsyncSession, username: str, password: str) -> None:
    check_password(password)
    user = await session.scalar(select(User).where(User.username == username))
    if user is None:
        raise AuthError(f"username: {username!r} does not exist")
    user.password_hash = await hash_password(password)
    await session.execute(delete(UserSession).where(UserSession.user_id == user.id))


async def authenticate_password(session: AsyncSession, username: str, password: str) -> User | None:
    """The user with that name and password, or None (the same time either way)."""
    user = await session.scalar(select(User).where(User.username == username))
    if user is None or user.disabled:
        await _verify(_DUMMY_HASH, password)
        return None
    if not await _verify(user.password_hash, password):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = await hash_password(password)
    return user


async def create_token(session: AsyncSession, user: User, name: str) -> tuple[ApiToken, str]:
    """A new API token for ``user``: returns the row and the token, which is never retrievable again."""
    name = name.strip()
    if not name or len(name) > 100:
        raise AuthError("name: give the token a name of 1 to 100 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(id=new_id(), user_id=user.id, name=name, token_hash=digest(token), prefix=token[:10])
    session.add(row)
    await session.flush()
    return row, token


async def revoke_token(session: AsyncSession, token_id: str) -> bool:
    result = await session.execute(
        update(ApiToken).where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
    return bool(getattr(result, "rowcount", 0))


async def principal_from_token(session: AsyncSession, token: str) -> Principal | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = (
        await session.execute(
            select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == digest(token), ApiToken.revoked_at.is_(None), User.disabled.is_(False))
        )
    ).first()
    if row is None:
        return None
    api_token, user = row
    now = utcnow()
    if api_token.last_used_at is None or now - api_token.last_used_at > timedelta(minutes=1):
        api_token.last_used_at = now
        await session.commit()
    return Principal(user.id, user.username, check_role(user.role), "token")


async def start_session(session: AsyncSession, user: User, hours: float) -> tuple[str, str]:
    """Sign ``user`` in: returns (cookie value, CSRF token). Old expired sessions are cleared."""
    now = utcnow()
    await session.execute(delete(UserSession).where(UserSession.expires_at < now))
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    session.add(
        UserSession(
            id_hash=digest(cookie),
            user_id=user.id,
            csrf_token=csrf,
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    )
    await session.flush()
    return cookie, csrf


async def principal_from_session(session: AsyncSession, cookie: str) -> Principal | None:
    if not cookie or len(cookie) > 200:
        return None
    row = (
        await session.execute(
            select(UserSession, User)
            .join(User, User.id == UserSession.user_id)
            .where(UserSession.id_hash == digest(cookie), User.disabled.is_(False))
        )
    ).first()
    if row is None:
        return None
    user_session, user = row
    if user_session.expires_at <= utcnow():
        return None
    return Principal(user.id, user.username, check_role(user.role), "session", user_session.csrf_token)


async def end_session(session: AsyncSession, cookie: str) -> None:
    await session.execute(delete(UserSession).where(UserSession.id_hash == digest(cookie)))


async def user_count(session: AsyncSession) -> int:
    return len((await session.scalars(select(User.id).limit(1))).all())


def expires(hours: float) -> datetime:
    return utcnow() + timedelta(hours=hours)
