"""Retry policies: when a step that failed for a passing reason is tried again.

The default schedule follows Svix and Standard Webhooks: the first attempt at once, then retries
after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h (8 attempts over about 28 hours), each delay
spread by ±10 % jitter. ``ROUTER_RETRY_SCHEDULE`` changes it for every step; a rule's or a step's
``retry:`` overrides it, either as an explicit ``schedule`` or as exponential/fixed backoff.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

DEFAULT_SCHEDULE = "5s,5m,30m,2h,5h,10h,10h"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
MAX_DELAY = 7 * 86400.0


def parse_duration(value: Any) -> float:
    """Seconds from ``30``, ``1.5``, ``"5s"``, ``"10m"``, ``"2h"``, ``"1d"`` or ``"250ms"``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string such as 5s, 10m, 2h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration; write seconds or a string such as 5s, 10m, 2h, 1d")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds < 0 or seconds > MAX_DELAY:
        raise ValueError(f"{value!r} is out of range: a duration is from 0 to 7 days")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def parse_schedule(text: str) -> tuple[float, ...]:
    """``"5s,5m,30m"`` → (5.0, 300.0, 1800.0): the delays before each retry."""
    parts = [p for p in text.split(",") if p.strip()]
    return tuple(parse_duration(p) for p in parts)


class RetrySpec(BaseModel):
    """How a step is retried after a passing failure (connection error, timeout, 408, 429, 5xx)."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int | None = Field(
        None, ge=1, le=50, description="Attempts in all, the first included; 1 means no retry."
    )
    schedule: list[Duration] | None = Field(
        None,
        description="Delays before each retry, e.g. [5s, 1m, 10m]; instead of backoff settings.",
        examples=[["5s", "1m", "10m"]],
    )
    backoff: Literal["exponential", "fixed"] | None = Field(
        None, description="exponential doubles the delay from `initial` up to `max`; fixed waits `initial` each time."
    )
    initial: Duration | None = Field(None, description="First delay, e.g. 5s.", examples=["5s"])
    max: Duration | None = Field(None, description="Longest delay with exponential backoff, e.g. 1h.")
    jitter: float | None = Field(None, ge=0, le=1, description="Spread each delay by up to ± this fraction.")

    @model_validator(mode="after")
    def _one_style(self) -> RetrySpec:
        if self.schedule is not None and (self.backoff or self.initial is not None or self.max is not None):
            raise ValueError("give `schedule`, or `backoff` with `initial`/`max`, not both")
        return self


@dataclass(frozen=True)
class RetryPolicy:
    """Compiled: the delays before attempts 2, 3, …; len(delays) + 1 attempts in all."""

    delays: tuple[float, ...]
    jitter: float = 0.1

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1

    def delay_before(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before ``attempt`` (2 for the first retry); Retry-After is honoured when longer."""
        base = self.delays[min(attempt, len(self.delays) + 1) - 2]
        spread = base * self.jitter
        delay = base + (rng or random).uniform(-spread, spread) if spread else base
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_DELAY))
        return max(0.0, delay)

    def as_dict(self) -> dict[str, Any]:
        return {"max_attempts": self.max_attempts, "delays": list(self.delays), "jitter": self.jitter}


def compile_policy(spec: RetrySpec | None, default: RetryPolicy, base: RetryPolicy | None = None) -> RetryPolicy:
    """A step's policy: its own ``retry``, else its rule's, else the global default."""
    inherited = base or default
    if spec is None:
        return inherited
    jitter = inherited.jitter if spec.jitter is None else spec.jitter
    if spec.schedule is not None:
        delays = tuple(spec.schedule)
        if spec.max_attempts is not None:
            delays = _fit(delays, spec.max_attempts)
        return RetryPolicy(delays, jitter)
    if spec.backoff is not None or spec.initial is not None:
        initial = spec.initial if spec.initial is not None else 5.0
        cap = spec.max if spec.max is not None else 3600.0
        count = (spec.max_attempts or 8) - 1
        if spec.backoff == "fixed":
            delays = tuple(initial for _ in range(count))
        else:
            delays = tuple(min(cap, initial * 2**i) for i in range(count))
        return RetryPolicy(delays, jitter)
    delays = inherited.delays if spec.max_attempts is None else _fit(inherited.delays, spec.max_attempts)
    return RetryPolicy(delays, jitter)


def _fit(delays: tuple[float, ...], attempts: int) -> tuple[float, ...]:
    """Cut or stretch (repeating the last delay) to ``attempts`` attempts in all."""
    count = attempts - 1
    if count <= len(delays):
        return delays[:count]
    last = delays[-1] if delays else 5.0
    return delays + tuple(last for _ in range(count - len(delays)))
