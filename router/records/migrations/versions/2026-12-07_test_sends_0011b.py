"""mark the events made by Send test (2026-12-07)"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011b"
down_revision = "0011a"


def upgrade() -> None:
    # ALTER TABLE ADD COLUMN on every database: SQLite takes a NOT NULL column with a default in place, where
    # a batch "move and copy" would rewrite the events table (and, with foreign keys on, cascade to its runs)
    op.add_column("events", sa.Column("test_send", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("test_send")
