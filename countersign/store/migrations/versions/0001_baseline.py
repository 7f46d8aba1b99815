"""Countersign's tables as they were before migrations: created where missing, so this first
migration also adopts a database made by an earlier release (every table there, no revision yet).

A table an earlier release made may lack columns added since (the audit log's `key_id`, the ledger's
lease): those are added, nullable as they were added then. Nothing is dropped or rewritten.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here, not imported from the stores: later migrations change the stores' tables, never this.
_tables = sa.MetaData()

sa.Table(
    "audit_events",
    _tables,
    sa.Column("workflow_id", sa.Text(), nullable=False),
    sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
    sa.Column("tenant", sa.Text(), nullable=False),
    sa.Column("event", sa.Text(), nullable=False),
    sa.Column("actor", sa.Text(), nullable=False),
    sa.Column("actor_kind", sa.Text(), nullable=False),
    sa.Column("role", sa.Text(), nullable=True),
    sa.Column("proposal_version", sa.Integer(), nullable=True),
    sa.Column("proposal_hash", sa.Text(), nullable=True),
    sa.Column("state", sa.Text(), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False),
    sa.Column("data", sa.Text(), nullable=True),
    sa.Column("at", sa.Text(), nullable=False),
    sa.Column("at_utc", sa.Text(), nullable=False),
    sa.Column("prev_hash", sa.Text(), nullable=False),
    sa.Column("key_id", sa.Text(), nullable=True),
    sa.Column("hash", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("workflow_id", "seq"),
)
sa.Table(
    "audit_legacy_seal",
    _tables,
    sa.Column("workflow_id", sa.Text(), nullable=False),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("hash", sa.Text(), nullable=False),
    sa.Column("key_id", sa.Text(), nullable=False),
    sa.Column("mac", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("workflow_id"),
)
sa.Table(
    "callback_deliveries",
    _tables,
    sa.Column("id", sa.Text(), nullable=False),
    sa.Column("tenant", sa.Text(), nullable=False),
    sa.Column("workflow_id", sa.Text(), nullable=False),
    sa.Column("requester_id", sa.Text(), nullable=False),
    sa.Column("event_id", sa.Text(), nullable=False),
    sa.Column("event_type", sa.Text(), nullable=False),
    sa.Column("url", sa.Text(), nullable=False),
    sa.Column("event", sa.Text(), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("status", sa.Text(), nullable=False),
    sa.Column("http_status", sa.Integer(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("at", sa.Text(), nullable=False),
    sa.Column("redelivered_by", sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint("id"),
)
sa.Table(
    "webhook_secrets",
    _tables,
    sa.Column("tenant", sa.Text(), nullable=False),
    sa.Column("generation", sa.Integer(), autoincrement=False, nullable=False),
    sa.Column("secret", sa.Text(), nullable=False),
    sa.Column("created_at", sa.Text(), nullable=False),
    sa.Column("signs_until", sa.Double(), nullable=True),
    sa.PrimaryKeyConstraint("tenant", "generation"),
)
sa.Table(
    "decision_links",
    _tables,
    sa.Column("id", sa.Text(), nullable=False),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("key_id", sa.Text(), nullable=False),
    sa.Column("mac", sa.Text(), nullable=False),
    sa.Column("grant", sa.Text(), nullable=False),
    sa.Column("workflow_id", sa.Text(), nullable=False),
    sa.Column("created_at", sa.Text(), nullable=False),
    sa.Column("used_at", sa.Text(), nullable=True),
    sa.Column("used_for", sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint("id"),
)
sa.Table(
    "declared_tools",
    _tables,
    sa.Column("tenant", sa.Text(), nullable=False),
    sa.Column("name", sa.Text(), nullable=False),
    sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("args_schema", sa.Text(), nullable=False),
    sa.Column("side_effect", sa.Text(), nullable=False),
    sa.Column("risk", sa.Text(), nullable=False),
    sa.Column("declared_by", sa.Text(), nullable=False),
    sa.Column("declared_at", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("tenant", "name", "version"),
)
sa.Table(
    "digest_entries",
    _tables,
    sa.Column("note_key", sa.Text(), nullable=False),
    sa.Column("recipient_id", sa.Text(), nullable=False),
    sa.Column("tenant", sa.Text(), nullable=False),
    sa.Column("workflow_id", sa.Text(), nullable=False),
    sa.Column("note", sa.Text(), nullable=False),
    sa.Column("queued_at", sa.Double(), nullable=False),
    sa.Column("due_at", sa.Double(), nullable=False),
    sa.Column("claim_id", sa.Text(), nullable=True),
    sa.Column("claimed_at", sa.Double(), nullable=True),
    sa.Column("sent_at", sa.Double(), nullable=True),
    sa.PrimaryKeyConstraint("note_key", "recipient_id"),
)
sa.Table(
    "tool_executions",
    _tables,
    sa.Column("idempotency_key", sa.Text(), nullable=False),
    sa.Column("workflow_id", sa.Text(), nullable=False),
    sa.Column("tool", sa.Text(), nullable=False),
    sa.Column("args_sha256", sa.Text(), nullable=False),
    sa.Column("status", sa.Text(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("result", sa.Text(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("started_at", sa.Text(), nullable=False),
    sa.Column("finished_at", sa.Text(), nullable=True),
    sa.Column("fence", sa.Integer(), server_default=sa.text("0"), nullable=False),
    sa.Column("lease_owner", sa.Text(), nullable=True),
    sa.Column("lease_expires_at", sa.Double(), nullable=True),
    sa.PrimaryKeyConstraint("idempotency_key"),
)
sa.Table(
    "graph_definitions",
    _tables,
    sa.Column("tenant", sa.Text(), nullable=False),
    sa.Column("graph_id", sa.Text(), nullable=False),
    sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
    sa.Column("definition", sa.Text(), nullable=False),
    sa.Column("created_by", sa.Text(), nullable=False),
    sa.Column("created_at", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("tenant", "graph_id", "version"),
)
sa.Table(
    "slack_messages",
    _tables,
    sa.Column("id", sa.Text(), nullable=False),
    sa.Column("note_key", sa.Text(), nullable=False),
    sa.Column("target", sa.Text(), nullable=False),
    sa.Column("team_id", sa.Text(), nullable=True),
    sa.Column("channel_id", sa.Text(), nullable=False),
    sa.Column("ts", sa.Text(), nullable=False),
    sa.Column("workflow_id", sa.Text(), nullable=False),
    sa.Column("tenant", sa.Text(), nullable=False),
    sa.Column("step_index", sa.Integer(), nullable=False),
    sa.Column("proposal_version", sa.Integer(), nullable=False),
    sa.Column("kind", sa.Text(), nullable=False),
    sa.Column("blocks", sa.Text(), nullable=False),
    sa.Column("sent_at", sa.Text(), nullable=False),
    sa.Column("closed", sa.Text(), nullable=True),
    sa.Column("updated_at", sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("note_key", "target", name="slack_messages_once"),
)
sa.Table(
    "slack_request_ends",
    _tables,
    sa.Column("workflow_id", sa.Text(), nullable=False),
    sa.Column("tenant", sa.Text(), nullable=False),
    sa.Column("subject", sa.Text(), nullable=False),
    sa.Column("at", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("workflow_id"),
)
sa.Index(
    "audit_events_by_tenant_actor",
    *[_tables.tables["audit_events"].c[n] for n in ["tenant", "actor"]],
    unique=False,
)
sa.Index(
    "audit_events_by_tenant_time",
    *[_tables.tables["audit_events"].c[n] for n in ["tenant", "at_utc"]],
    unique=False,
)
sa.Index(
    "callback_deliveries_by_workflow",
    *[_tables.tables["callback_deliveries"].c[n] for n in ["tenant", "workflow_id"]],
    unique=False,
)
sa.Index(
    "decision_links_by_message", *[_tables.tables["decision_links"].c[n] for n in ["message"]], unique=False
)
sa.Index(
    "digest_entries_due",
    *[_tables.tables["digest_entries"].c[n] for n in ["sent_at", "due_at"]],
    unique=False,
)
sa.Index(
    "tool_executions_by_workflow",
    *[_tables.tables["tool_executions"].c[n] for n in ["workflow_id"]],
    unique=False,
)
sa.Index(
    "slack_messages_by_workflow",
    *[_tables.tables["slack_messages"].c[n] for n in ["workflow_id"]],
    unique=False,
)


def upgrade(schema: str | None = None) -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    for table in _tables.sorted_tables:
        if not inspector.has_table(table.name, schema=schema):
            table.create(bind)
            continue
        present = {column["name"] for column in inspector.get_columns(table.name, schema=schema)}
        for column in table.columns:
            if column.name not in present:
                added = sa.Column(
                    column.name, column.type, nullable=column.nullable, server_default=column.server_default
                )
                op.add_column(table.name, added, schema=schema)
        indexed = {index["name"] for index in inspector.get_indexes(table.name, schema=schema)}
        for index in table.indexes:
            if index.name not in indexed:
                index.create(bind)


def downgrade(schema: str | None = None) -> None:
    bind = op.get_bind()
    for table in reversed(_tables.sorted_tables):
        table.drop(bind, checkfirst=True)
