"""Hot reload: watch ROUTER_RULES_DIR and swap to the new rule set atomically, or keep the old one.

The new set is loaded and compiled in full first; only when every file loads is it put in force,
by one assignment to ``RulesHolder.current``. A job reads ``current`` once when it starts and routes
and delivers the whole event with that set, so a reload never half-routes an event in flight; each
run records the version of the set that routed it. When a file does not load, the set in force
stays, and the errors are logged and shown by ``/health`` (503) and ``/api/rules`` until a later
edit loads cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog
from watchfiles import Change, awatch

from router.errors import RuleSetError
from router.jobs import RulesHolder
from router.ruleset import load_ruleset
from router.settings import Settings

log = structlog.get_logger("router.reload")


async def reload_rules(settings: Settings, holder: RulesHolder) -> bool:
    """Load the folder again; put the new set in force only if all of it loads. True when it did."""
    previous = holder.current.version
    try:
        ruleset = await asyncio.to_thread(load_ruleset, settings.rules_dir)
    except RuleSetError as exc:
        holder.errors = [str(e) for e in exc.errors]
        for line in holder.errors:
            log.error("rules_reload_error", message=line, version_in_force=previous)
        return False
    except OSError as exc:
        holder.errors = [f"{settings.rules_dir}: cannot read the rules: {exc}"]
        log.error("rules_reload_error", message=holder.errors[0], version_in_force=previous)
        return False
    holder.current = ruleset  # the swap: one reference assignment
    holder.errors = []
    holder.loaded = True
    for warning in ruleset.warnings:
        log.warning("rules_warning", message=warning)
    if ruleset.version != previous:
        log.info("rules_reloaded", version=ruleset.version, previous=previous, rules=len(ruleset.rules))
    return True


def _rule_file_changed(change: Change, path: str) -> bool:
    """Rule files only: tests (``*.test.yaml``), samples and editor swap files do not trigger a reload."""
    return path.endswith((".yaml", ".yml")) and not path.endswith((".test.yaml", ".test.yml"))


class RulesWatcher:
    """A background task reloading the holder's rules whenever a rule file below the folder changes."""

    def __init__(self, settings: Settings, holder: RulesHolder, debounce_ms: int = 200) -> None:
        self.settings, self.holder, self.debounce_ms = settings, holder, debounce_ms
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> RulesWatcher:
        self._task = asyncio.create_task(self._run(), name="rules-watcher")
        return self

    async def _run(self) -> None:
        folder = Path(self.settings.rules_dir)
        log.info("rules_watching", folder=str(folder))
        try:
            async for _changes in awatch(
                folder,
                watch_filter=_rule_file_changed,
                stop_event=self._stop,
                debounce=self.debounce_ms,
                step=50,
                recursive=True,
            ):
                await reload_rules(self.settings, self.holder)
        except Exception as exc:  # the watcher must never take the process down
            log.error("rules_watch_failed", folder=str(folder), error=f"{type(exc).__name__}: {exc}")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=2)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task


def watch_rules(settings: Settings, holder: RulesHolder) -> RulesWatcher:
    """Start watching ``settings.rules_dir`` for ``holder`` (call from a running event loop)."""
    return RulesWatcher(settings, holder).start()
