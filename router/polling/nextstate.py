"""What a poll keeps of a pass: the source's next state (cursor, continuation, failures, when it is due
next), and secrets masked in whatever is stored (``mask``), put back into a stored continuation (``unmask``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from router.pipeline.match import redact
from router.polling.compile import CompiledPoll
from router.polling.fetch import PassResult, greater
from router.polling.timing import after_failure, after_success


def mask(value: Any, secrets: Mapping[str, str]) -> Any:
    """Secret values replaced by ``[secret:NAME]`` before anything is stored."""
    return redact(value, secrets)


def unmask(value: Any, secrets: Mapping[str, str]) -> Any:
    """Put the secrets back into a stored continuation (``[secret:NAME]`` → the value)."""
    if isinstance(value, str):
        for name, secret in secrets.items():
            value = value.replace(f"[secret:{name}]", secret)
        return value
    if isinstance(value, dict):
        return {k: unmask(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [unmask(v, secrets) for v in value]
    return value


def next_state(
    poll: CompiledPoll,
    state: Any,
    result: PassResult,
    now: datetime,
    finished: datetime,
    secrets: Mapping[str, str],
) -> tuple[dict[str, Any], str]:
    """The source's state after a pass (the values to store) and the poll's outcome.

    A complete pass moves the cursor; an unfinished one keeps where it stopped (``resume``) and the greatest
    cursor seen so far; a failed one counts a failure and backs off, dropping a continuation refused for good.
    """
    values: dict[str, Any] = {"last_poll_at": now}
    pass_cursor = greater(state.pass_cursor, result.cursor) if result.pages else state.pass_cursor
    if result.etag_key is not None:
        values |= {"etag": result.etag[:512] if result.etag else None, "etag_key": result.etag_key}
    if result.error is None:
        values |= {"failures": 0, "last_error": None, "last_success_at": finished}
        if result.complete:
            values |= {"resume": None, "pass_cursor": None}
            if pass_cursor is not None:
                values["cursor"] = pass_cursor
        else:
            values |= {"resume": mask(result.resume, secrets), "pass_cursor": pass_cursor}
        due = after_success(poll.timing, now, finished)
        if result.poll_interval:
            due = max(due, now + timedelta(seconds=result.poll_interval))
        values["next_poll_at"] = due
        outcome = "not_modified" if result.not_modified else ("ok" if result.complete else "partial")
        return values, outcome
    failures = (state.failures or 0) + 1
    values |= {
        "failures": failures,
        "last_error": str(mask(result.error, secrets))[:2000],
        "next_poll_at": after_failure(poll.timing, finished, failures, result.retry_after),
    }
    if result.pages or not result.permanent:
        values |= {"resume": mask(result.resume, secrets) if result.resume else state.resume}
        values["pass_cursor"] = pass_cursor
    else:  # refused for good before any page: a stored continuation that no longer works is dropped
        values |= {"resume": None, "pass_cursor": None}
    return values, "failed"
