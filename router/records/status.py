"""The states an event, a run and a step are in, as the database stores them (``status`` columns).

StrEnums: a member is the string the column holds (``RunStatus.DEAD == "dead"``), so rows read back as
plain strings compare equal, and what is written, logged or returned as JSON is unchanged.

    event  received ─▶ routed ─▶ succeeded | failed        (or unmatched: no rule matched)
    run    pending ─▶ running ─▶ succeeded | failed | dead | superseded
                        └──▶ retrying | held ──▶ running    (waiting for the next try)
    step   pending ─▶ succeeded | skipped | failed | dead, or retrying | held (then superseded by a replay)
"""

from __future__ import annotations

from enum import StrEnum


class EventStatus(StrEnum):
    RECEIVED = "received"  # committed by ingest; workers claim these
    ROUTED = "routed"  # runs created; settled from them
    UNMATCHED = "unmatched"  # no rule matched: final
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"  # a step failed for a passing reason; its next try is a deferred job
    HELD = "held"  # its destination is paused or failing: waiting without using up an attempt
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a permanent error
    DEAD = "dead"  # attempts exhausted
    SUPERSEDED = "superseded"  # a replay replaced the waiting run


class StepStatus(StrEnum):
    PENDING = "pending"
    RETRYING = "retrying"
    HELD = "held"
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"  # `when` was false, or the ledger says it was sent before
    FAILED = "failed"
    DEAD = "dead"
    SUPERSEDED = "superseded"


class AttemptOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# A run in one of these states is over: nothing executes it again.
RUN_TERMINAL = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.DEAD, RunStatus.SUPERSEDED)
RUN_FAILED = (RunStatus.FAILED, RunStatus.DEAD)
# Waiting for its next try (a deferred job, or a paused destination).
RUN_WAITING = (RunStatus.RETRYING, RunStatus.HELD)
# An event's final state when its only run ends so.
EVENT_OF_RUN = {
    RunStatus.SUCCEEDED: EventStatus.SUCCEEDED,
    RunStatus.FAILED: EventStatus.FAILED,
    RunStatus.DEAD: EventStatus.FAILED,
}
