"""Alembic environment. Migrations run on a connection handed over by
:meth:`signaling.storage.database.Database.migrate` (``telemed db upgrade``), never from a URL
read here, so the same typed settings govern the server and its migrations."""

from alembic import context

from signaling.storage.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `telemed db upgrade`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
