"""Hot reload: watch ROUTER_RULES_DIR (and the database's UI rules) and swap to the new rule set atomically.

The new set is loaded and compiled in full first; only when every file loads is it put in force,
by one assignment to ``RulesHolder.current``. A job reads ``current`` once when it starts and routes
and delivers the whole event with that set, so a reload never half-routes an event in flight; each
run records the version of the set that routed it. When a file does not load, the set in force
stays, and the errors are logged and shown by ``/health`` (503) and ``/api/rules`` until a later
edit loads cleanly.

Rules built in the UI live in the database: every process polls it once a second (a count and the
latest change time of the UI rules and stored secrets, one cheap query) and reloads when it moved, so
a rule saved in the UI is in force in every worker within about two seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from watchfiles import Change, awatch

from router import metrics
from router.errors import RuleSetError
from router.rules import merged
from router.rules.holder import RulesHolder
from router.settings import Settings

log = structlog.get_logger("router.reload")


async def reload_rules(
    settings: Settings, holder: RulesHolder, sessions: async_sessionmaker[AsyncSession] | None = None
) -> bool:
    """Load the folder (and the UI rules) again; put the new set in force only if every file loads.

    True when it did. A UI rule that does not compile is left out, with its error in ``holder.errors``.
    """
    previous = holder.current.version
    try:
        ui_stamp = await merged.read_stamp(sessions)
        ruleset, errors = await merged.load_all(settings, sessions)
    except RuleSetError as exc:
        holder.errors = [str(e) for e in exc.errors]
        metrics.rules_reload_failed()
        for line in holder.errors:
            log.error("rules_reload_error", message=line, version_in_force=previous)
        return False
    except OSError as exc:
        holder.errors = [f"{settings.rules_dir}: cannot read the rules: {exc}"]
        metrics.rules_reload_failed()
        log.error("rules_reload_error", message=holder.errors[0], version_in_force=previous)
        return False
    known = set(holder.current.warnings)  # logged when the set in force was loaded: not again on each reload
    holder.current = ruleset  # the swap: one reference assignment
    holder.errors = errors
    holder.loaded, holder.ui_stamp = True, ui_stamp
    for warning in ruleset.warnings:
        if warning not in known:
            log.warning("rules_warning", message=warning)
    for line in errors:
        log.error("rules_ui_error", message=line, version=ruleset.version)
    if ruleset.version != previous:
        log.info("rules_reloaded", version=ruleset.version, previous=previous, rules=len(ruleset.rules))
    return True


def _rule_file_changed(change: Change, path: str) -> bool:
    """Rule files only: tests (``*.test.yaml``), samples and editor swap files do not trigger a reload."""
    return path.endswith((".yaml", ".yml")) and not path.endswith((".test.yaml", ".test.yml"))


class RulesWatcher:
    """Background tasks reloading the holder's rules whenever a rule file below the folder changes, and
    (given ``sessions``) whenever the database's UI rules or stored secrets change."""

    def __init__(
        self,
        settings: Settings,
        holder: RulesHolder,
        debounce_ms: int = 200,
        sessions: async_sessionmaker[AsyncSession] | None = None,
        poll_seconds: float = 1.0,
    ) -> None:
        self.settings, self.holder, self.debounce_ms = settings, holder, debounce_ms
        self.sessions, self.poll_seconds = sessions, poll_seconds
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> RulesWatcher:
        self._tasks.append(asyncio.create_task(self._run(), name="rules-watcher"))
        if self.sessions is not None:
            self._tasks.append(asyncio.create_task(self._poll(), name="ui-rules-poll"))
        return self

    async def reload(self) -> bool:
        """Reload now (one at a time: a reload that read older data never lands after a newer one)."""
        async with self._lock:
            return await reload_rules(self.settings, self.holder, self.sessions)

    async def _poll(self) -> None:
        """Reload when the UI rules or stored secrets change. The stamp starts at the one read before the set
        in force was loaded: a change made after that read reloads; none does not compile the rules again
        (with 10,000 rules, a second compile at start-up is seconds of CPU)."""
        assert self.sessions is not None
        last: str | None = self.holder.ui_stamp
        failing = False
        while not self._stop.is_set():
            try:
                async with self.sessions() as session:
                    seen: str | None = await merged.stamp(session)
                failing = False
            except Exception as exc:  # the database is away: try again next tick, reload once it is back
                if not failing:
                    log.warning("ui_rules_poll_failed", error=f"{type(exc).__name__}: {exc}")
                failing, seen = True, None
            if seen is not None and seen != last:
                try:
                    await self.reload()
                except Exception as exc:  # the poller must never take the process down
                    log.error("ui_rules_reload_failed", error=f"{type(exc).__name__}: {exc}")
                    seen = None
            last = seen
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.poll_seconds)

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
                await self.reload()
        except Exception as exc:  # the watcher must never take the process down
            log.error("rules_watch_failed", folder=str(folder), error=f"{type(exc).__name__}: {exc}")

    async def stop(self) -> None:
        """Stop the tasks: they end within a tick; one stuck after 2 s is cancelled. Never raises their errors."""
        self._stop.set()
        if not self._tasks:
            return
        _done, stuck = await asyncio.wait(self._tasks, timeout=2)
        for task in stuck:
            task.cancel()
        if stuck:
            await asyncio.wait(stuck, timeout=2)


def watch_rules(
    settings: Settings, holder: RulesHolder, sessions: async_sessionmaker[AsyncSession] | None = None
) -> RulesWatcher:
    """Start watching ``settings.rules_dir`` (and, given ``sessions``, the UI rules) for ``holder``.

    Call from a running event loop.
    """
    return RulesWatcher(settings, holder, sessions=sessions).start()
