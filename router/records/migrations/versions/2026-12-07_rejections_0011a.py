"""rejected ingest requests (2026-12-07)"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011a"
down_revision = "0012a"


def upgrade() -> None:
    op.create_table(
        "rejections",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("remote_addr", sa.String(length=64), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body_size", sa.Integer(), nullable=True),
        sa.Column("body_prefix", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rejections_source_id", "rejections", ["source", "id"])


def downgrade() -> None:
    op.drop_index("ix_rejections_source_id", table_name="rejections")
    op.drop_table("rejections")
