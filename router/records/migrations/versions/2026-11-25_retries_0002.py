"""retries, dead letters and replay (2026-11-25)"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("job_id", sa.String(length=96), nullable=True))
        batch_op.add_column(sa.Column("replay_of", sa.String(length=26), nullable=True))
        batch_op.create_index("ix_runs_status_next", ["status", "next_attempt_at"], unique=False)
    with op.batch_alter_table("run_steps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_steps", schema=None) as batch_op:
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("note")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_status_next")
        batch_op.drop_column("replay_of")
        batch_op.drop_column("job_id")
        batch_op.drop_column("next_attempt_at")
