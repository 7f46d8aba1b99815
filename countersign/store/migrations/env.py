"""Alembic's environment: always run by store/schema.py on a connection it opened and locked.

The connection (and, for PostgreSQL tests, the schema the tables live in) come in `config.attributes`;
there is no alembic.ini and no URL here, so a password never reaches Alembic's configuration or logs.
"""

from alembic import context

config = context.config
connection = config.attributes["connection"]
schema = config.attributes.get("schema")

context.configure(
    connection=connection,
    target_metadata=config.attributes.get("target_metadata"),
    version_table_schema=schema,
    # SQLite cannot ALTER most things in place: batch mode rebuilds a table where it must.
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations(schema=schema)
