"""Alembic's entry point: lockgate.store.migrations.upgrade passes the connection, in its transaction."""

from alembic import context

connection = context.config.attributes["connection"]
# transactional_ddl: SQLite's DDL is transactional too; the caller's transaction holds the whole upgrade.
context.configure(connection=connection, transactional_ddl=True, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
