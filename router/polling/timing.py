"""When a source is polled or a schedule fires: ``every: 30s`` or ``cron: "*/5 * * * *"`` (with ``timezone:``).

Cron expressions are read by croniter in the schedule's time zone (IANA name, default UTC), so
``0 9 * * 1-5`` in Europe/Berlin is 09:00 Berlin time on both sides of a daylight-saving change.
Every time here is an aware UTC ``datetime``; callers pass ``now`` in, so tests drive the clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

MAX_BACKOFF = 3600.0  # a failing poll is tried at least this often (or at its own interval, if longer)
MAX_RETRY_AFTER = 86400.0  # a provider's Retry-After is honoured up to a day
_TINY = timedelta(microseconds=1)
MAX_WALK = 100_000


@dataclass(frozen=True)
class Every:
    """A fixed interval, its ticks on whole multiples of it since 1970-01-01 UTC (every: 1h is on the hour)."""

    seconds: float

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment``."""
        return self.tick(math.floor(moment.timestamp() / self.seconds) + 1)

    def tick(self, n: int) -> datetime:
        return datetime.fromtimestamp(n * self.seconds, UTC)

    def interval(self, moment: datetime) -> float:
        return self.seconds

    def describe(self) -> str:
        return f"every {_duration(self.seconds)}"


@dataclass(frozen=True)
class Cron:
    """A cron expression read in a time zone."""

    expression: str
    timezone: str = "UTC"

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment``."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        tick: datetime = croniter(self.expression, local).get_next(datetime)
        return tick.astimezone(UTC)

    def interval(self, moment: datetime) -> float:
        first = self.next_after(moment)
        return (self.next_after(first) - first).total_seconds()

    def describe(self) -> str:
        return f"cron {self.expression} ({self.timezone})"


Timing = Every | Cron


def cron_problem(expression: str) -> str | None:
    """Why a cron expression is refused, or None. Five fields: minute hour day-of-month month day-of-week."""
    if len(expression.split()) != 5:
        return f"{expression!r} is not a cron expression: write five fields, minute hour day month weekday"
    try:
        croniter(expression)
    except (ValueError, KeyError) as exc:
        return f"{expression!r} is not a valid cron expression: {exc}"
    return None


def timezone_problem(name: str) -> str | None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r}; use an IANA name such as UTC, Europe/Berlin or America/New_York"
    return None


def ticks_between(timing: Timing, after: datetime, until: datetime, limit: int) -> tuple[list[datetime], int]:
    """The newest ``limit`` ticks in (after, until], oldest first, and how many ticks that range holds in all.

    A cron range is walked at most ``MAX_WALK`` ticks (a minutely schedule left for two months); past that
    the count stops growing and the newest ticks are found from ``until`` back.
    """
    if isinstance(timing, Every):
        first = math.floor(after.timestamp() / timing.seconds) + 1
        last = math.floor(until.timestamp() / timing.seconds)
        total = max(0, last - first + 1)
        return [timing.tick(n) for n in range(max(first, last - limit + 1), last + 1)], total
    ticks: list[datetime] = []
    total = 0
    tick = timing.next_after(after)
    while tick <= until and total < MAX_WALK:
        total += 1
        ticks.append(tick)
        if len(ticks) > limit:
            ticks.pop(0)
        tick = timing.next_after(tick)
    if tick <= until:  # walked MAX_WALK: take the newest ticks from the end of the range instead
        start = until - timedelta(seconds=timing.interval(until) * (limit + 1))
        tail, _ = ticks_between(timing, max(start, tick), until, limit)
        ticks = (ticks + tail)[-limit:]
    return ticks, total


def after_success(timing: Timing, started: datetime, now: datetime) -> datetime:
    """The next poll after one that worked: the first tick after it started, and not sooner than a second from now."""
    return max(timing.next_after(started), now + timedelta(seconds=1))


def after_failure(timing: Timing, now: datetime, failures: int, retry_after: float | None = None) -> datetime:
    """The next poll after ``failures`` failed ones in a row: the wait doubles from the interval, up to an hour
    (or the interval, if longer); a provider's ``Retry-After`` is a floor."""
    interval = max(1.0, timing.interval(now))
    wait = min(interval * 2 ** max(0, failures - 1), max(interval, MAX_BACKOFF))
    if retry_after is not None:
        wait = max(wait, min(retry_after, MAX_RETRY_AFTER))
    due = now + timedelta(seconds=wait)
    if isinstance(timing, Cron):
        return timing.next_after(due - _TINY)  # the first tick at or after the wait
    return due


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
