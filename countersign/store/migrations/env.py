"""Alembic's environment: always run by store/schema.py on a connection it opened and locked.

The connection (and, for PostgreSQL tests, the schema the tables live in) come in `config.attributes`;
there is no alembic.ini and no URL here, so a password never reaches Alembic's configuration or logs.
"""

from alembic import context


def _run() -> None:
    config = context.config
    schema = config.attributes.get("schema")
    context.configure(
        connection=config.attributes["connection"],
        target_metadata=config.attributes.get("target_metadata"),
        version_table_schema=schema,
        # SQLite cannot ALTER most things in place: batch mode rebuilds a table where it must.
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations(schema=schema)


# Alembic runs this file under a module name of its own; imported as a package module (the wheel's
# import check, a tool listing modules) it does nothing, as there is no migration to run.
if __name__ != "countersign.store.migrations.env":
    _run()
