#!/bin/sh
# Run by the postgres image once, when its data volume is first initialised (docker-entrypoint-initdb.d):
# Countersign's audit store (COUNTERSIGN_AUDIT_DATABASE_URL) gets a database and a role of its own,
# rather than the superuser Temporal connects as. Countersign creates its tables itself on first use.
# On an existing volume this does not run again: see docs/deployment.md to create them by hand, or to
# change the password.
set -eu

: "${AUDIT_DB_PASSWORD:?AUDIT_DB_PASSWORD: the password of the countersign role}"

# psql quotes :'password' as a literal, whatever characters it holds.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set=password="$AUDIT_DB_PASSWORD" <<'SQL'
CREATE ROLE countersign LOGIN PASSWORD :'password';
CREATE DATABASE countersign OWNER countersign;
REVOKE ALL ON DATABASE countersign FROM PUBLIC;
SQL
