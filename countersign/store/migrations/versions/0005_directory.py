"""Each tenant's directory: counterparties, people, budgets and exchange rates

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 20:28:21.143521
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade(schema: str | None = None) -> None:
    op.create_table(
        "directory_records",
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("key", sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql"), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "kind", "key"),
    )


def downgrade(schema: str | None = None) -> None:
    op.drop_table("directory_records")
