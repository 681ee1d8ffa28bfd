"""Post/Redirect/Get for the UI's forms: a change answers ``303`` to a page that shows its outcome once.

The outcome (a notice, maybe a value shown only once such as a new password or API token) waits in Redis
under a random id for ``TTL`` seconds and is read at most once (GETDEL), so reloading the page neither
sends the form again nor shows the secret again. When Redis cannot be reached, the handler renders the
outcome directly (``None`` from ``redirect``), as before.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import urlencode

import structlog
from litestar.response import Redirect

from router.runtime import Runtime

log = structlog.get_logger("router.ui")
PREFIX = "router:flash:"
TTL = 120


async def redirect(runtime: Runtime, to: str, **outcome: Any) -> Redirect | None:
    """A 303 to ``to`` carrying ``outcome`` (keyword arguments of that page's renderer), or None."""
    flash = secrets.token_urlsafe(16)
    try:
        await runtime.redis.set(PREFIX + flash, json.dumps(outcome), ex=TTL)
    except Exception as exc:  # Redis down: the caller shows the outcome in this response instead
        log.warning("flash_unavailable", error=str(exc))
        return None
    joiner = "&" if "?" in to else "?"
    return Redirect(f"{to}{joiner}{urlencode({'flash': flash})}", status_code=303)


async def take(runtime: Runtime, flash: str) -> dict[str, Any]:
    """The outcome stored under ``flash`` (once), or nothing."""
    if not flash or len(flash) > 64:
        return {}
    try:
        raw = await runtime.redis.getdel(PREFIX + flash)
    except Exception:
        return {}
    if not raw:
        return {}
    try:
        found = json.loads(raw)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
