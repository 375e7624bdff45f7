"""Alembic environment: runs on the connection handed over by ``events.sql.upgrade``."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only through events.sql.upgrade
    raise RuntimeError("run migrations through events.sql.upgrade(engine)")

context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
