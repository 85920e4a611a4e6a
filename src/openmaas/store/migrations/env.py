"""Alembic environment: migrations run on a connection handed in by ``Database.migrate``."""

from __future__ import annotations

from alembic import context

from openmaas.store.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `openmaas db upgrade` or Database.migrate()")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
