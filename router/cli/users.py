"""`router user`, `router token` and `router secrets`: accounts, API tokens and stored secrets from a shell.

They work on the database named by ROUTER_DATABASE_URL (no web process needed), and every change is
written to the audit log with the actor ``cli:<os user>``. Errors are one line and exit 1; usage
mistakes exit 2.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncSession

from router.access.auth import ROLES
from router.cli.common import cli_actor, prepare_database, settings_or_exit
from router.errors import AuthError, SecretStoreError
from router.settings import Settings

T = TypeVar("T")
DEV_KEY_FILE = Path("data") / "secret.key"


def _run(work: Callable[[Settings, AsyncSession], Awaitable[T]]) -> T:
    """Open the database for one command; a user-caused error becomes one clear line and exit 1."""
    from router.records import db

    settings = settings_or_exit()
    prepare_database(settings)

    async def main() -> T:
        engine = db.create_engine(settings.database_url)
        try:
            async with db.sessionmaker(engine)() as session:
                return await work(settings, session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except (AuthError, SecretStoreError) as exc:
        raise click.ClickException(str(exc)) from None


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def _state(revoked_at: Any) -> str:
    return "revoked" if revoked_at else "active"


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _new_password(password_stdin: bool, generate: bool) -> tuple[str, bool]:
    """The password from stdin, a generator or a prompt with confirmation; and whether it was generated."""
    from router.access.accounts import generate_password

    if password_stdin and generate:
        raise click.UsageError("use either --password-stdin or --generate, not both")
    if generate:
        return generate_password(), True
    if password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise click.ClickException("password: nothing on standard input")
        return line, False
    return click.prompt("Password", hide_input=True, confirmation_prompt=True), False


password_options = [
    click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input."),
    click.option("--generate", is_flag=True, help="Generate a random password and print it once."),
]


def with_password_options(fn: Any) -> Any:
    for option in reversed(password_options):
        fn = option(fn)
    return fn


# -- router user ------------------------------------------------------------------------------


@click.group(name="user")
def user_group() -> None:
    """Users who sign in to the UI (roles: viewer, editor, admin)."""


@user_group.command("create")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(ROLES), help="viewer reads; editor also changes; admin all.")
@with_password_options
def user_create(username: str, role: str, password_stdin: bool, generate: bool) -> None:
    """Create a user. The password is asked for twice unless given on stdin or generated."""
    from router.access.accounts import add_user

    password, generated = _new_password(password_stdin, generate)

    async def work(_settings: Settings, session: AsyncSession) -> None:
        await add_user(session, cli_actor(), username, password, role)
        await session.commit()

    _run(work)
    click.echo(f"created user {username} ({role})")
    if generated:
        click.echo(f"password (shown once): {password}")


@user_group.command("list")
def user_list() -> None:
    """List users with their role and whether they are disabled."""
    from router.access.accounts import list_users

    async def work(_settings: Settings, session: AsyncSession) -> list[list[str]]:
        return [
            [u.username, u.role, "disabled" if u.disabled else "enabled", _when(u.created_at)]
            for u in await list_users(session)
        ]

    rows = _run(work)
    if not rows:
        click.echo("no users yet; create one with `router user create NAME --role admin`")
        return
    _table(rows, ["USER", "ROLE", "STATUS", "CREATED"])


@user_group.command("password")
@click.argument("username")
@with_password_options
def user_password(username: str, password_stdin: bool, generate: bool) -> None:
    """Set a user's password. This signs them out of every browser session."""
    from router.access.accounts import UserChange, change_user

    password, generated = _new_password(password_stdin, generate)

    async def work(_settings: Settings, session: AsyncSession) -> None:
        await change_user(session, cli_actor(), username, UserChange(password=password))
        await session.commit()

    _run(work)
    click.echo(f"password of {username} changed; their sessions ended")
    if generated:
        click.echo(f"password (shown once): {password}")


def _set_disabled(username: str, disabled: bool) -> None:
    from router.access.accounts import UserChange, change_user

    async def work(_settings: Settings, session: AsyncSession) -> None:
        await change_user(session, cli_actor(), username, UserChange(disabled=disabled))
        await session.commit()

    _run(work)


@user_group.command("disable")
@click.argument("username")
def user_disable(username: str) -> None:
    """Disable a user: signed out everywhere, their API tokens refused."""
    _set_disabled(username, True)
    click.echo(f"{username} is disabled: signed out everywhere, API tokens refused")


@user_group.command("enable")
@click.argument("username")
def user_enable(username: str) -> None:
    """Enable a disabled user again; their unrevoked tokens work again."""
    _set_disabled(username, False)
    click.echo(f"{username} is enabled")


# -- router token -----------------------------------------------------------------------------


@click.group(name="token")
def token_group() -> None:
    """API tokens (sent as `Authorization: Bearer <token>`)."""


@token_group.command("create")
@click.argument("username")
@click.option("--name", required=True, help="What the token is for, e.g. ci-deploy.")
def token_create(username: str, name: str) -> None:
    """Create an API token for USERNAME. It is printed once, alone on stdout."""
    from router.access.accounts import add_token, get_user

    async def work(_settings: Settings, session: AsyncSession) -> tuple[str, str]:
        owner = await get_user(session, username)
        row, token = await add_token(session, cli_actor(), owner, name)
        await session.commit()
        return row.id, token

    token_id, token = _run(work)
    click.echo(f"token {token_id} for {username}; it is not shown again:", err=True)
    click.echo(token)


@token_group.command("list")
@click.option("--user", "username", help="Only this user's tokens.")
def token_list(username: str | None) -> None:
    """List API tokens. Only their first characters are kept, and shown."""
    from router.access.accounts import get_user, list_tokens

    async def work(_settings: Settings, session: AsyncSession) -> list[list[str]]:
        user_id = (await get_user(session, username)).id if username else None
        return [
            [t.id, owner, t.name, f"{t.prefix}…", _when(t.created_at), _when(t.last_used_at), _state(t.revoked_at)]
            for t, owner in await list_tokens(session, user_id)
        ]

    rows = _run(work)
    if not rows:
        click.echo("no tokens")
        return
    _table(rows, ["ID", "USER", "NAME", "STARTS", "CREATED", "LAST USED", "STATE"])


@token_group.command("revoke")
@click.argument("token_id", metavar="ID")
def token_revoke(token_id: str) -> None:
    """Revoke the token with this ID (`router token list` shows IDs)."""
    from router.access.accounts import remove_token

    async def work(_settings: Settings, session: AsyncSession) -> tuple[str, str]:
        row, owner = await remove_token(session, cli_actor(), token_id)
        await session.commit()
        return row.name, owner

    name, owner = _run(work)
    click.echo(f"revoked token {token_id} ({name}) of {owner}")


# -- router secrets ---------------------------------------------------------------------------


def _secret_key(settings: Settings) -> str | None:
    """ROUTER_SECRET_KEY, else the key `router dev` keeps in data/secret.key (said on stderr)."""
    if settings.secret_key:
        return settings.secret_key
    if DEV_KEY_FILE.is_file():
        click.echo(f"ROUTER_SECRET_KEY is not set: using the key `router dev` wrote to {DEV_KEY_FILE}", err=True)
        return DEV_KEY_FILE.read_text().strip()
    return None


@click.group(name="secrets")
def secrets_group() -> None:
    """Secrets for rules, stored encrypted with ROUTER_SECRET_KEY."""


@secrets_group.command("keygen")
def secrets_keygen() -> None:
    """Print a new Fernet key for ROUTER_SECRET_KEY."""
    from cryptography.fernet import Fernet

    click.echo(Fernet.generate_key().decode())


@secrets_group.command("set")
@click.argument("name")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the value from standard input (all of it).")
def secrets_set(name: str, from_stdin: bool) -> None:
    """Store secret NAME, encrypted. Rules read it as secrets.NAME; the value is asked for twice unless
    --stdin."""
    from router.access import secretstore

    _check_name(name)  # before asking for the value
    if from_stdin:
        value = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    else:
        value = click.prompt("Value", hide_input=True, confirmation_prompt=True)

    async def work(settings: Settings, session: AsyncSession) -> bool:
        created = await secretstore.save(session, _secret_key(settings), name, value, cli_actor())
        await session.commit()
        return created

    created = _run(work)
    click.echo(f"secret {name} {'stored' if created else 'replaced'}")


def _check_name(name: str) -> None:
    from router.access.secretstore import check_name

    try:
        check_name(name)
    except SecretStoreError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None


@secrets_group.command("list")
def secrets_list() -> None:
    """List secret names, never values: stored ones (with dates and who) and the environment's."""
    from router.access import secretstore

    async def work(_settings: Settings, session: AsyncSession) -> list[list[str]]:
        return [[r.name, _when(r.updated_at), r.updated_by] for r in await secretstore.list_secrets(session)]

    rows = _run(work)
    env = secretstore.env_names()
    if rows:
        _table(rows, ["NAME", "UPDATED", "BY"])
    else:
        click.echo("no stored secrets")
    if env:
        click.echo("from the environment (ROUTER_SECRET_<NAME>): " + ", ".join(env))


@secrets_group.command("delete")
@click.argument("name")
def secrets_delete(name: str) -> None:
    """Delete stored secret NAME."""
    from router.access import secretstore

    async def work(_settings: Settings, session: AsyncSession) -> None:
        await secretstore.remove(session, name, cli_actor())
        await session.commit()

    _run(work)
    click.echo(f"deleted secret {name}")


@secrets_group.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt stored secrets with the first key of ROUTER_SECRET_KEY.

    \b
    To rotate the key:
      1. router secrets keygen                  (a new key)
      2. ROUTER_SECRET_KEY=NEW,OLD              (new first: it encrypts,
                                                 both decrypt); restart
      3. router secrets rotate                  (re-encrypt with NEW)
      4. ROUTER_SECRET_KEY=NEW                  (drop OLD); restart
    """
    from router.access import secretstore

    async def work(settings: Settings, session: AsyncSession) -> int:
        count = await secretstore.rotate_audited(session, _secret_key(settings), cli_actor())
        await session.commit()
        return count

    count = _run(work)
    click.echo(f"re-encrypted {count} secret(s) with the first key of ROUTER_SECRET_KEY")


COMMANDS = (user_group, token_group, secrets_group)


# -- router dev: first start ------------------------------------------------------------------


def bootstrap_admin(settings: Settings) -> str | None:
    """With no user in the database, create ``admin`` with a generated password and return it."""
    from router.access import accounts
    from router.access.auth import user_count
    from router.records import db

    async def main() -> str | None:
        engine = db.create_engine(settings.database_url)
        try:
            async with db.sessionmaker(engine)() as session:
                if await user_count(session):
                    return None
                password = accounts.generate_password()
                await accounts.add_user(session, cli_actor(), "admin", password, "admin")
                await session.commit()
                return password
        finally:
            await engine.dispose()

    return asyncio.run(main())


def dev_secret_key(path: Path = DEV_KEY_FILE) -> tuple[str, bool]:
    """The key in ``path``, made (mode 0600) on first use; and whether it was just made."""
    from cryptography.fernet import Fernet

    if path.is_file():
        return path.read_text().strip(), False
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key, True
