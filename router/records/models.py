"""Database tables: the durable record of every event, run, step and attempt.

The database is the source of truth; Redis only carries work to do.

    Event ─< Run ─< RunStep ─< Attempt
    InboxRequest (the built-in request inbox); Rejection (refused ingest requests, bounded)
    User ─< ApiToken, User ─< UserSession; AuditEntry (who changed what); StoredSecret; UiRule
    PollState (one per polled, reconciled or scheduled source) ─< PollRun (each poll)
    AlertState (what each alert last saw, per subject)
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from router.records.status import EventStatus, RunStatus, StepStatus

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> str:
    """A 26-character ULID: sortable by creation time, unique without coordination."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database (SQLite stores none, so it is put back on load)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, Any: JSON}


class Event(Base):
    """One accepted incoming request (or one event made by an `emit` step)."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("source", "dedupe_key", name="uq_events_source_dedupe"),
        Index("ix_events_status_received", "status", "received_at"),
        Index("ix_events_source_id", "source", "id"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(2048))
    headers: Mapped[dict[str, Any]] = mapped_column(JSON)
    query: Mapped[dict[str, Any]] = mapped_column(JSON)
    content_type: Mapped[str | None] = mapped_column(String(255))
    body: Mapped[Any] = mapped_column(JSON, nullable=True)
    raw_body: Mapped[bytes] = mapped_column(LargeBinary)
    dedupe_key: Mapped[str | None] = mapped_column(String(512))
    # received: stored, not yet routed; routed: rules evaluated and runs created
    status: Mapped[str] = mapped_column(String(16), default=EventStatus.RECEIVED)
    matched: Mapped[int] = mapped_column(Integer, default=0)
    chain_depth: Mapped[int] = mapped_column(Integer, default=0)
    parent_step_id: Mapped[str | None] = mapped_column(String(26))
    ruleset_version: Mapped[str | None] = mapped_column(String(64))
    routed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # how it came: null for a webhook; emit, poll, reconcile (a webhook the provider never delivered) or schedule
    via: Mapped[str | None] = mapped_column(String(16))
    # made by the rule builder's Send test (router.tryout.sendtest): its runs are left out of dead letters by default
    test_send: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    runs: Mapped[list[Run]] = relationship(back_populates="event", order_by="Run.id", lazy="raise")


class Run(Base):
    """One rule matched for one event: its steps run in order."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_status_created", "status", "created_at"),
        Index("ix_runs_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    rule_id: Mapped[str] = mapped_column(String(64), index=True)
    rule_location: Mapped[str] = mapped_column(String(1024), default="")
    ruleset_version: Mapped[str] = mapped_column(String(64), default="")
    # pending → running → (retrying → running …) → succeeded | failed (permanent) | dead (retries exhausted)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.PENDING)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # when the next retry is due (retrying), or when the run last started (running): the reconciler's clock
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # the arq job id that carries this run's next attempt; the reconciler re-enqueues under the same id
    job_id: Mapped[str | None] = mapped_column(String(96))
    replay_of: Mapped[str | None] = mapped_column(String(26))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    event: Mapped[Event] = relationship(back_populates="runs", lazy="raise")
    steps: Mapped[list[RunStep]] = relationship(back_populates="run", order_by="RunStep.position", lazy="raise")


class RunStep(Base):
    """One step of a run: what was rendered, what came back, how it ended."""

    __tablename__ = "run_steps"
    __table_args__ = (UniqueConstraint("run_id", "position", name="uq_run_steps_position"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    step_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    # pending → running → (retrying → running …) → succeeded | failed | dead | skipped
    status: Mapped[str] = mapped_column(String(16), default=StepStatus.PENDING)
    note: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    idempotency_key: Mapped[str] = mapped_column(String(200))
    rendered: Mapped[Any] = mapped_column(JSON, nullable=True)
    output: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    attempts_count: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    run: Mapped[Run] = relationship(back_populates="steps", lazy="raise")
    attempts: Mapped[list[Attempt]] = relationship(back_populates="step", order_by="Attempt.number", lazy="raise")


class Attempt(Base):
    """One try of one step: the request summary, the response and the time it took."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_step_id: Mapped[str] = mapped_column(ForeignKey("run_steps.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_ms: Mapped[float] = mapped_column()
    request: Mapped[Any] = mapped_column(JSON, nullable=True)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    # succeeded | failed
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    retryable: Mapped[bool] = mapped_column(default=False)

    step: Mapped[RunStep] = relationship(back_populates="attempts", lazy="raise")


class InboxRequest(Base):
    """A request caught by the built-in inbox at ``/inbox/{name}``."""

    __tablename__ = "inbox_requests"
    __table_args__ = (Index("ix_inbox_name_id", "name", "id"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(2048))
    headers: Mapped[dict[str, Any]] = mapped_column(JSON)
    query: Mapped[dict[str, Any]] = mapped_column(JSON)
    body_text: Mapped[str] = mapped_column(Text)
    body: Mapped[Any] = mapped_column(JSON, nullable=True)


class Rejection(Base):
    """A refused ingest request (401, 404, 413, …), kept so a provider's "your endpoint keeps failing" can be
    looked up; bounded in count (ROUTER_REJECTIONS_KEEP). ``count`` > 1: that many like it, recorded as one
    because they came faster than ROUTER_REJECTIONS_PER_SECOND."""

    __tablename__ = "rejections"
    __table_args__ = (Index("ix_rejections_source_id", "source", "id"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    headers: Mapped[dict[str, Any]] = mapped_column(JSON)
    body_size: Mapped[int | None] = mapped_column(Integer)
    body_prefix: Mapped[str] = mapped_column(Text, default="")
    count: Mapped[int] = mapped_column(Integer, default=1)


class Destination(Base):
    """A destination paused by an operator or a ``410 Gone`` answer; steps to it wait until it is resumed."""

    __tablename__ = "destinations"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    paused: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str | None] = mapped_column(Text)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class User(Base):
    """Someone who signs in to the UI or owns API tokens. Roles: admin > editor > viewer."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiToken(Base):
    """A bearer token for automation; only its SHA-256 is kept, the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class UserSession(Base):
    """A signed-in browser: the cookie holds a random id, the table its SHA-256 and the CSRF token."""

    __tablename__ = "user_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """One change made through the UI, the API or the CLI: who, what, when."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_at", "at"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(300), default="")
    detail: Mapped[Any] = mapped_column(JSON, nullable=True)


class StoredSecret(Base):
    """A secret entered in the UI, encrypted with ROUTER_SECRET_KEY (Fernet); never shown again."""

    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(200), default="")


class UiRule(Base):
    """A rule built in the UI, kept as the same YAML a rule file holds."""

    __tablename__ = "ui_rules"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    yaml: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(200), default="")


class PollState(Base):
    """A polled, reconciled or scheduled source: its cursor, when it runs next, who holds its lease.

    The lease (``lease_token`` until ``lease_until``) lets one poll of the source run at a time across all
    workers; the commit that stores a poll's events also checks the token, so a poll whose lease was taken
    over commits nothing.
    """

    __tablename__ = "poll_state"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # poll | reconcile | schedule
    spec_hash: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    cursor: Mapped[Any] = mapped_column(JSON, nullable=True)
    # a pass over the pages not finished yet (max_pages, time budget or an error): where it goes on,
    # and the greatest cursor it has seen so far
    resume: Mapped[Any] = mapped_column(JSON, nullable=True)
    pass_cursor: Mapped[Any] = mapped_column(JSON, nullable=True)
    etag: Mapped[str | None] = mapped_column(String(512))
    etag_key: Mapped[str | None] = mapped_column(String(64))
    next_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_tick_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_holder: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    leases: Mapped[int] = mapped_column(Integer, default=0)


class PollRun(Base):
    """One poll of a source (or one schedule tick): when, how many pages and items, what it emitted, how it ended."""

    __tablename__ = "poll_runs"
    __table_args__ = (Index("ix_poll_runs_source_id", "source", "id"),)

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16), default="schedule")  # schedule | cli | ui
    holder: Mapped[str] = mapped_column(String(200), default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_ms: Mapped[float] = mapped_column(default=0.0)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    items: Mapped[int] = mapped_column(Integer, default=0)
    new_events: Mapped[int] = mapped_column(Integer, default=0)
    # ok | not_modified | partial (pages left for the next poll) | failed
    outcome: Mapped[str] = mapped_column(String(16))
    status: Mapped[int | None] = mapped_column(Integer)  # the last HTTP status seen
    error: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    cursor: Mapped[Any] = mapped_column(JSON, nullable=True)


class AlertState(Base):
    """One alert's state for one subject (a destination, a source, or "" for the whole router).

    ``status`` moves ok → pending → firing → ok; each move to or from ``firing`` is made by a conditional
    UPDATE, so however many workers evaluate, one notification is sent per firing and one per resolve.
    """

    __tablename__ = "alert_states"

    alert_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(300), primary_key=True, default="")
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="ok")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)  # first watched
    since: Mapped[datetime | None] = mapped_column(UTCDateTime())  # when the condition began
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    value: Mapped[float | None] = mapped_column(Float)
    summary: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
