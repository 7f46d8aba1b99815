"""Principals, their keys and delegations (moved out of principals.db)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 14:35:30.358006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade(schema: str | None = None) -> None:
    op.create_table(
        "api_keys",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("principal_id", sa.Text(), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql"), nullable=False),
        sa.Column("expires_at", sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql"), nullable=True),
        sa.Column("revoked_at", sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql"), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("key_hash"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index("api_keys_by_principal", ["principal_id"], unique=False)

    op.create_table(
        "delegation_log",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql"), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("delegator_id", sa.Text(), nullable=False),
        sa.Column("delegate_id", sa.Text(), nullable=True),
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("starts_at", sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql"), nullable=True),
        sa.Column("ends_at", sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql"), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "delegations",
        sa.Column("delegator_id", sa.Text(), nullable=False),
        sa.Column("delegate_id", sa.Text(), nullable=False),
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("starts_at", sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql"), nullable=False),
        sa.Column("ends_at", sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql"), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql"), nullable=False),
        sa.PrimaryKeyConstraint("delegator_id"),
    )
    with op.batch_alter_table("delegations", schema=None) as batch_op:
        batch_op.create_index("delegations_by_delegate", ["delegate_id", "tenant"], unique=False)

    op.create_table(
        "principals",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("roles", sa.Text(), nullable=False),
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql"), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), server_default="api-key", nullable=False),
        sa.Column("disabled_at", sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql"), nullable=True),
        sa.Column("slack_user_id", sa.Text(), nullable=True),
        sa.Column("delivery", sa.Text(), nullable=True),
        sa.Column("quiet_hours", sa.Text(), nullable=True),
        sa.Column("timezone", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("principals", schema=None) as batch_op:
        batch_op.create_index("principals_by_slack_user", ["slack_user_id"], unique=True)
        batch_op.create_index("principals_by_tenant", ["tenant"], unique=False)


def downgrade(schema: str | None = None) -> None:
    with op.batch_alter_table("principals", schema=None) as batch_op:
        batch_op.drop_index("principals_by_tenant")
        batch_op.drop_index("principals_by_slack_user")

    op.drop_table("principals")
    with op.batch_alter_table("delegations", schema=None) as batch_op:
        batch_op.drop_index("delegations_by_delegate")

    op.drop_table("delegations")
    op.drop_table("delegation_log")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index("api_keys_by_principal")

    op.drop_table("api_keys")
