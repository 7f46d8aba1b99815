#!/bin/sh
# One-shot job `temporal-schema` (docker-compose.yml, image temporalio/admin-tools): Temporal's two
# PostgreSQL databases, created when missing and brought to the schema of this admin-tools release.
# Every step is idempotent: `create` keeps an existing database, `setup-schema -v 0.0` only adds the
# version tables and never lowers a newer version, `update-schema` applies only the versions not yet
# applied. So it runs on every `docker compose up`, and after an image upgrade it is what migrates the
# schema before the new server starts. temporal-sql-tool reads the password from SQL_PASSWORD.
set -eu

: "${SQL_HOST:?SQL_HOST: the PostgreSQL host}"
: "${SQL_USER:?SQL_USER: a PostgreSQL role that may create databases}"
: "${SQL_PASSWORD:?SQL_PASSWORD: that role password}"
SQL_PORT="${SQL_PORT:-5432}"
PLUGIN="${SQL_PLUGIN:-postgres12}"
SCHEMA_DIR="${SCHEMA_DIR:-/etc/temporal/schema/postgresql/v12}"

setup() { # database name, schema directory under SCHEMA_DIR
    echo "Temporal database $1: create if missing, then update its schema"
    temporal-sql-tool --plugin "$PLUGIN" --ep "$SQL_HOST" -p "$SQL_PORT" -u "$SQL_USER" --db "$1" create
    temporal-sql-tool --plugin "$PLUGIN" --ep "$SQL_HOST" -p "$SQL_PORT" -u "$SQL_USER" --db "$1" \
        setup-schema -v 0.0
    temporal-sql-tool --plugin "$PLUGIN" --ep "$SQL_HOST" -p "$SQL_PORT" -u "$SQL_USER" --db "$1" \
        update-schema -d "$SCHEMA_DIR/$2/versioned"
}

setup "${TEMPORAL_DB:-temporal}" temporal
setup "${TEMPORAL_VISIBILITY_DB:-temporal_visibility}" visibility
echo "Temporal schemas are up to date"
