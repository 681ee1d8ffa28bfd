"""What every `router` command shares: settings from the environment, the database opened, who acts.

The command modules (processes, delivery, users, ops, and router/polling/cli.py) import what they share
from here, never from commands.py, so the `router` command has no import cycle: commands.py
assembles them.
"""

from __future__ import annotations

import asyncio
import getpass
import os
from pathlib import Path
from typing import Any

import click

from router.errors import SettingsError
from router.settings import Settings, load_settings


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def safe_url(url: str) -> str:
    """A URL fit to print: any password replaced."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def prepare_database(settings: Settings) -> None:
    """Open the database and apply migrations, or stop with a message naming the URL and the reason."""
    from router.records import db

    async def run() -> None:
        engine = db.create_engine(settings.database_url)
        try:
            await db.migrate(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise click.ClickException(
            f"cannot open the database at {safe_url(settings.database_url)} (ROUTER_DATABASE_URL): {reason}"
        ) from None


def cli_actor() -> str:
    """``cli:<os user>``: who made a change from a shell."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return f"cli:uid-{os.getuid()}"


def data_dir(settings: Settings) -> Path:
    """The folder `router dev` keeps its state in: beside the SQLite database, else ./data."""
    if settings.database_url.startswith("sqlite"):
        return Path(settings.database_url.split(":///", 1)[-1]).parent
    return Path("data")
