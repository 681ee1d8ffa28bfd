"""The rule set in force: the rule files plus the enabled UI rules (router.rules.stored), with the stored secrets.

Its ``secrets`` are the stored (UI) secrets and the ``ROUTER_SECRET_*`` variables (the environment wins a
clash). Loading stays all-or-nothing for the files; a UI rule that no longer compiles (its source was
removed from the files, a file rule took its id) is left out with an error in the holder's list, shown by
``/health``. ``stamp`` changes whenever a UI rule or a stored secret does, so the reloader polls it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from router import logs
from router.access import secretstore
from router.errors import RuleSetError
from router.records.models import UiRule
from router.rules import collector
from router.rules.compiled import RuleSet, by_source
from router.rules.ruleset import load_ruleset
from router.rules.stored import compile_ui_rule
from router.settings import Settings


def merge(files: RuleSet, rows: Sequence[UiRule], stored_secrets: Mapping[str, str]) -> tuple[RuleSet, list[str]]:
    """The rule set in force: the files' plus every enabled UI rule that compiles; and the errors."""
    rules = dict(files.rules)
    errors: list[str] = []
    digest = hashlib.sha256(files.version.encode())
    for row in rows:
        if not row.enabled:
            continue
        try:
            compiled = compile_ui_rule(row.yaml, row.id, files)
        except RuleSetError as exc:
            errors.extend(f"{e}; the UI rule is not loaded" for e in exc.errors)
            continue
        rules[row.id] = compiled
        digest.update(f"\0{row.id}\0{row.version}\0".encode() + row.yaml.encode())
    version = files.version if len(rules) == len(files.rules) else digest.hexdigest()[:12]
    merged = dataclasses.replace(
        files,
        rules=rules,
        by_source=by_source(rules),
        version=version,
        secrets={**stored_secrets, **files.secrets},  # the environment wins a clash
    )
    if version == files.version:  # the same rules: the files' indexes hold for the merged set
        merged._indexes.update(files._indexes)
    return merged, errors


async def load_all(settings: Settings, sessions: async_sessionmaker[AsyncSession] | None) -> tuple[RuleSet, list[str]]:
    """Load the rule files (raising RuleSetError as before), then add the database's UI rules and secrets.

    A database that cannot be read leaves the file rules in force, with an error saying so.
    """
    files = await asyncio.to_thread(_load_and_index, settings.rules_dir)
    logs.remember_secrets([*files.secrets.values(), *(s.verify.secret for s in files.sources.values() if s.verify)])
    if sessions is None:
        return files, []
    try:
        async with sessions() as session:
            rows = list((await session.scalars(select(UiRule).order_by(UiRule.created_at, UiRule.id))).all())
            stored, secret_errors = await secretstore.decrypt_all(session, settings.secret_key)
    except Exception as exc:  # the database is down or not migrated: keep the files' rules
        return files, [f"UI rules and stored secrets could not be read from the database: {type(exc).__name__}: {exc}"]
    # compiling UI rules and indexing a large set is CPU work: off the event loop, so ingest keeps answering
    merged, errors = await asyncio.to_thread(lambda: _merged_and_indexed(files, rows, stored))
    logs.remember_secrets(stored.values())  # never to be written in a log line
    return merged, errors + secret_errors


def _load_and_index(rules_dir: Path) -> RuleSet:
    with collector.paused():
        return load_ruleset(rules_dir).build_indexes()


def _merged_and_indexed(files: RuleSet, rows: Sequence[UiRule], stored: Mapping[str, str]) -> tuple[RuleSet, list[str]]:
    with collector.paused():
        merged, errors = merge(files, rows, stored)
        return merged.build_indexes(), errors


async def read_stamp(sessions: async_sessionmaker[AsyncSession] | None) -> str | None:
    """The stamp now, or None (no database, or it cannot be read): read it *before* a load, so that a
    change made while the load runs moves the stamp and the poller reloads."""
    if sessions is None:
        return None
    try:
        async with sessions() as session:
            return await stamp(session)
    except Exception:  # the load reports the database's problem; None makes the poller reload once it answers
        return None


async def stamp(session: AsyncSession) -> str:
    """Changes whenever a UI rule or a stored secret is added, changed or removed (polled to reload)."""
    count, latest, versions = (
        await session.execute(select(func.count(), func.max(UiRule.updated_at), func.sum(UiRule.version)))
    ).one()
    return f"{count}:{latest}:{versions}|{await secretstore.stamp(session)}"
