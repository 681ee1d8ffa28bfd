"""Per-destination flow control shared by every worker: a rate limit and a concurrency limit.

A step's ``limits: {rate: "10/s", concurrency: 2}`` applies to the destination it calls. Both are
kept in Redis, so they hold across all workers: the rate as a GCRA token bucket (one key per
destination), the concurrency as a set of leases that expire if a worker dies holding one. A step
over its limit waits a moment when the wait is short, else goes back to the queue for later
(``retrying``, no attempt used), so a slow API is not hammered and no worker slot is held idle.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}
PREFIX = "router:limit:"
LEASE_SECONDS = 120  # a lease outlives any job; a killed worker's lease frees itself after this

# GCRA: returns 0 when allowed (and records it), else the milliseconds to wait.
_GCRA = """
local now = tonumber(ARGV[1]); local interval = tonumber(ARGV[2]); local burst = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - interval * burst
if now < allow_at then return math.ceil(allow_at - now) end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil(tat + interval - now + 1000))
return 0
"""
# Concurrency: drop expired leases, take one if there is room; returns 1 when taken.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4]); redis.call('PEXPIRE', KEYS[1], ARGV[5]); return 1
end
return 0
"""


class LimitSpec(BaseModel):
    """Flow control for the destination a step calls, shared by every worker."""

    model_config = ConfigDict(extra="forbid")

    rate: str | None = Field(
        None, description="Most calls per second, minute or hour, e.g. 10/s or 100/m.", examples=["10/s"]
    )
    concurrency: int | None = Field(None, ge=1, le=1000, description="Most calls in flight at once.")

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            per_second(value)
        return value


def per_second(rate: str) -> float:
    match = _RATE.match(rate)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{rate!r} is not a rate; write calls per unit such as 10/s, 100/m or 1000/h")
    return float(match.group(1)) / _PER[match.group(2)]


@dataclass
class Lease:
    key: str
    token: str


class Limiter:
    """Checks and takes a destination's rate and concurrency allowances in Redis."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def acquire(self, dest: str, spec: LimitSpec) -> tuple[float, Lease | None]:
        """(0, lease) when the call may go now; (seconds to wait, None) when it may not."""
        now_ms = time.time() * 1000
        if spec.rate is not None:
            interval = 1000.0 / per_second(spec.rate)
            wait_ms = await self.redis.eval(_GCRA, 1, f"{PREFIX}rate:{dest}", now_ms, interval, 0)
            if int(wait_ms) > 0:
                return int(wait_ms) / 1000, None
        if spec.concurrency is None:
            return 0.0, None
        key, token = f"{PREFIX}concurrency:{dest}", uuid.uuid4().hex
        taken = await self.redis.eval(
            _ACQUIRE, 1, key, now_ms, spec.concurrency, now_ms + LEASE_SECONDS * 1000, token, LEASE_SECONDS * 1000
        )
        if int(taken) != 1:
            return 0.05, None
        return 0.0, Lease(key, token)

    async def release(self, lease: Lease | None) -> None:
        if lease is not None:
            await self.redis.zrem(lease.key, lease.token)
