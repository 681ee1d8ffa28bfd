"""polling: poll_state, poll_runs and events.via (2026-12-07)"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013a"
down_revision = "0004"


def upgrade() -> None:
    op.add_column("events", sa.Column("via", sa.String(length=16), nullable=True))  # no table rewrite
    op.create_table(
        "poll_state",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("spec_hash", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cursor", sa.JSON(), nullable=True),
        sa.Column("resume", sa.JSON(), nullable=True),
        sa.Column("pass_cursor", sa.JSON(), nullable=True),
        sa.Column("etag", sa.String(length=512), nullable=True),
        sa.Column("etag_key", sa.String(length=64), nullable=True),
        sa.Column("next_poll_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_tick_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_poll_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_token", sa.String(length=32), nullable=True),
        sa.Column("lease_holder", sa.String(length=200), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("leases", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source"),
    )
    op.create_table(
        "poll_runs",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Double(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("new_events", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("cursor", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_poll_runs_source_id", "poll_runs", ["source", "id"])


def downgrade() -> None:
    op.drop_index("ix_poll_runs_source_id", table_name="poll_runs")
    op.drop_table("poll_runs")
    op.drop_table("poll_state")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("via")
