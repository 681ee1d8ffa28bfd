"""Secrets entered in the UI: encrypted at rest with Fernet, never shown again after saving.

The key is ``ROUTER_SECRET_KEY``: one or more comma-separated Fernet keys (``router secrets keygen``
prints one). The first key encrypts; every key decrypts (``cryptography``'s MultiFernet), so a key
is rotated by putting a new one first, re-encrypting (``router secrets rotate``) and then dropping
the old one. Rules reach these secrets as ``secrets.NAME``, like ``ROUTER_SECRET_NAME`` variables;
a name set in both places takes the environment's value (the environment is the operator's).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from router.access import audit
from router.errors import NoSuchSecret, SecretStoreError
from router.records.models import StoredSecret, utcnow

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
ENV_PREFIX = "ROUTER_SECRET_"
# ROUTER_SECRET_KEY is the key that encrypts the stored secrets, not a secret for rules.
NOT_RULE_SECRETS = frozenset({"KEY"})


def keyring(secret_key: str | None) -> MultiFernet:
    """The MultiFernet for ``ROUTER_SECRET_KEY``; raises SecretStoreError when it is unset or malformed."""
    keys = [k.strip() for k in (secret_key or "").split(",") if k.strip()]
    if not keys:
        raise SecretStoreError(
            "ROUTER_SECRET_KEY is not set: secrets saved in the UI are encrypted with it; "
            "generate one with `router secrets keygen`"
        )
    fernets = []
    for index, key in enumerate(keys):
        try:
            fernets.append(Fernet(key.encode()))
        except (ValueError, TypeError):
            raise SecretStoreError(
                f"ROUTER_SECRET_KEY: key {index + 1} is not a Fernet key (32 url-safe base64-encoded bytes); "
                "generate one with `router secrets keygen`"
            ) from None
    return MultiFernet(fernets)


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise SecretStoreError(
            f"name: {name!r} is not a valid secret name; use letters, digits and _, not starting with a digit"
        )
    return name


async def set_secret(session: AsyncSession, ring: MultiFernet, name: str, value: str, actor: str) -> None:
    """Create or replace a secret (the caller commits, with its audit entry)."""
    check_name(name)
    if not value:
        raise SecretStoreError(f"{name}: the value is empty")
    ciphertext = ring.encrypt(value.encode()).decode()
    row = await session.get(StoredSecret, name)
    now = utcnow()
    if row is None:
        session.add(StoredSecret(name=name, ciphertext=ciphertext, created_at=now, updated_at=now, updated_by=actor))
    else:
        row.ciphertext, row.updated_at, row.updated_by = ciphertext, now, actor


async def delete_secret(session: AsyncSession, name: str) -> bool:
    result = await session.execute(delete(StoredSecret).where(StoredSecret.name == name))
    return bool(getattr(result, "rowcount", 0))


async def list_secrets(session: AsyncSession) -> list[StoredSecret]:
    """The rows (names and dates; the ciphertext is never decrypted for display)."""
    return list((await session.scalars(select(StoredSecret).order_by(StoredSecret.name))).all())


async def decrypt_all(session: AsyncSession, secret_key: str | None) -> tuple[dict[str, str], list[str]]:
    """Every stored secret in clear, for the rule set; plus an error per secret that cannot be decrypted."""
    rows = await list_secrets(session)
    if not rows:
        return {}, []
    try:
        ring = keyring(secret_key)
    except SecretStoreError as exc:
        return {}, [f"{len(rows)} stored secret(s) cannot be used: {exc}"]
    values: dict[str, str] = {}
    errors: list[str] = []
    for row in rows:
        try:
            values[row.name] = ring.decrypt(row.ciphertext.encode()).decode()
        except InvalidToken:
            errors.append(
                f"secret {row.name}: cannot be decrypted with ROUTER_SECRET_KEY "
                "(was the key that encrypted it removed? put it back after the new key)"
            )
    return values, errors


async def rotate(session: AsyncSession, secret_key: str | None) -> int:
    """Re-encrypt every stored secret with the first key; returns how many (the caller commits)."""
    ring = keyring(secret_key)
    rows = await list_secrets(session)
    for row in rows:
        try:
            row.ciphertext = ring.rotate(row.ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretStoreError(
                f"secret {row.name}: no key in ROUTER_SECRET_KEY decrypts it; add the key that encrypted it"
            ) from None
    return len(rows)


async def stamp(session: AsyncSession) -> str:
    """Changes whenever a secret is added, changed or removed (processes poll it to reload)."""
    count, latest = (await session.execute(select(func.count(), func.max(StoredSecret.updated_at)))).one()
    return f"{count}:{latest}"


def env_names(env: Mapping[str, str] | None = None) -> list[str]:
    """The names of secrets the environment provides (``ROUTER_SECRET_<NAME>``), never their values."""
    source = os.environ if env is None else env
    return sorted(
        name[len(ENV_PREFIX) :]
        for name in source
        if name.startswith(ENV_PREFIX)
        and len(name) > len(ENV_PREFIX)
        and name[len(ENV_PREFIX) :] not in NOT_RULE_SECRETS
    )


def secret_dict(row: StoredSecret, env: Mapping[str, str] | None = None) -> dict[str, object]:
    """What may be shown about a stored secret: its name, dates and who set it (never the value)."""
    return {
        "name": row.name,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "updated_by": row.updated_by,
        "overridden_by_environment": row.name in env_names(env),
    }


async def save(session: AsyncSession, secret_key: str | None, name: str, value: str, actor: str) -> bool:
    """Encrypt and store a secret with its audit entry (the caller commits); True when it is new."""
    ring = keyring(secret_key)
    existed = await session.get(StoredSecret, check_name(name)) is not None
    await set_secret(session, ring, name, value, actor)
    audit.record(session, actor, "secret_replace" if existed else "secret_set", name)
    return not existed


async def remove(session: AsyncSession, name: str, actor: str) -> None:
    """Delete a stored secret with its audit entry; SecretStoreError when there is none by that name."""
    if not await delete_secret(session, name):
        raise NoSuchSecret(f"name: no stored secret {name!r}")
    audit.record(session, actor, "secret_delete", name)


async def rotate_audited(session: AsyncSession, secret_key: str | None, actor: str) -> int:
    count = await rotate(session, secret_key)
    audit.record(session, actor, "secrets_rotate", "", {"secrets": count})
    return count
