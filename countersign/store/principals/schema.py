"""The principal store's tables, in Countersign's one SQL database (SQLite or PostgreSQL).

Kept apart from the queries: the shape of the tables changes for different reasons than what the store
asks of them. A `principals.db` file of an earlier release is brought here by
store/legacy/principals_file.py.

Times are fixed-width UTC text (rows.instant_text), so that `expires_at > now` compares as time does; on
PostgreSQL they compare byte by byte (collation "C") whatever the database's own collation.
"""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

_INSTANT = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")

# `source`: 'api-key' for `countersign principal add`, 'jwt' for a token's subject (sign_in).
principals = sa.Table(
    "principals",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("roles", sa.Text, nullable=False),  # a JSON list, sorted (rows.roles_text)
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("created_at", _INSTANT, nullable=False),
    sa.Column("email", sa.Text),
    sa.Column("source", sa.Text, nullable=False, server_default="api-key"),
    sa.Column("disabled_at", _INSTANT),
    # Where else a reviewer is told and may decide (store/principals/channels.py).
    sa.Column("slack_user_id", sa.Text),
    sa.Column("delivery", sa.Text),  # immediate (NULL), hourly or daily
    sa.Column("quiet_hours", sa.Text),  # HH:MM-HH:MM in `timezone`, or NULL
    sa.Column("timezone", sa.Text),
    sa.Index("principals_by_tenant", "tenant"),
    # Unique: a Slack user decides as one principal only. The database holds that when two gateways map
    # the same member id at once, which a look before the write cannot (NULLs are many, as they should).
    sa.Index("principals_by_slack_user", "slack_user_id", unique=True),
)

# Keys by their digest: authenticating is one unique-index read joined to the principal's row. `seq`
# orders a principal's keys as they were made (two made in the same microsecond included): the file this
# table came from ordered by SQLite's rowid, which PostgreSQL has no equivalent of.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key_hash", sa.Text, nullable=False, unique=True),
    sa.Column("principal_id", sa.Text, nullable=False),
    sa.Column("prefix", sa.Text),
    sa.Column("created_at", _INSTANT, nullable=False),
    sa.Column("expires_at", _INSTANT),
    sa.Column("revoked_at", _INSTANT),
    sa.Index("api_keys_by_principal", "principal_id"),
    sqlite_autoincrement=True,
)

# One row per delegator: setting a new delegation replaces the previous one.
delegations = sa.Table(
    "delegations",
    metadata,
    sa.Column("delegator_id", sa.Text, primary_key=True),
    sa.Column("delegate_id", sa.Text, nullable=False),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("starts_at", _INSTANT, nullable=False),
    sa.Column("ends_at", _INSTANT, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", _INSTANT, nullable=False),
    sa.Index("delegations_by_delegate", "delegate_id", "tenant"),
)

# Append-only: every delegation set or ended, with who and why, outlives its replacement.
delegation_log = sa.Table(
    "delegation_log",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", _INSTANT, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("delegator_id", sa.Text, nullable=False),
    sa.Column("delegate_id", sa.Text),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("starts_at", _INSTANT),
    sa.Column("ends_at", _INSTANT),
    sa.Column("reason", sa.Text),
    sqlite_autoincrement=True,
)
