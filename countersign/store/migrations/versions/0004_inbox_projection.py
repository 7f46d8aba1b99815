"""The inbox projection (pending decisions and their deciders) and leases

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 16:55:30.482328
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade(schema: str | None = None) -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "pending_deciders",
        sa.Column(
            "workflow_id", sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql"), nullable=False
        ),
        sa.Column("decider", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("workflow_id", "decider"),
    )
    with op.batch_alter_table("pending_deciders", schema=None) as batch_op:
        batch_op.create_index("pending_deciders_by_decider", ["decider", "workflow_id"], unique=False)

    op.create_table(
        "pending_decisions",
        sa.Column(
            "workflow_id", sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql"), nullable=False
        ),
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("requester", sa.Text(), nullable=False),
        sa.Column("request_type", sa.Text(), nullable=True),
        sa.Column("amount", sa.Double(), nullable=True),
        sa.Column("due_order", sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql"), nullable=False),
        sa.Column("entry", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("workflow_id"),
    )
    with op.batch_alter_table("pending_decisions", schema=None) as batch_op:
        batch_op.create_index("pending_decisions_inbox", ["tenant", "due_order", "workflow_id"], unique=False)


def downgrade(schema: str | None = None) -> None:
    with op.batch_alter_table("pending_decisions", schema=None) as batch_op:
        batch_op.drop_index("pending_decisions_inbox")

    op.drop_table("pending_decisions")
    with op.batch_alter_table("pending_deciders", schema=None) as batch_op:
        batch_op.drop_index("pending_deciders_by_decider")

    op.drop_table("pending_deciders")
    op.drop_table("leases")
