"""alert states: what each alert last saw, per subject (2026-12-07)"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012a"
down_revision = "0013a"


def upgrade() -> None:
    op.create_table(
        "alert_states",
        sa.Column("alert_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("alert_id", "subject"),
    )


def downgrade() -> None:
    op.drop_table("alert_states")
