"""Alembic environment: migrations run on a connection handed over by router.records.db.migrate()."""

from __future__ import annotations

from alembic import context

from router.records.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `alembic` run by hand without router.records.db
    raise SystemExit("run migrations with `router db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
