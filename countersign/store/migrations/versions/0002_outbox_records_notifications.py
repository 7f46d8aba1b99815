"""The tools' outbox, records, the notification log and delivery marks (moved out of files in the data dir)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 14:22:44.704121
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade(schema: str | None = None) -> None:
    op.create_table(
        "delivery_marks",
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("mark", sa.Text(), nullable=False),
        sa.Column("marked_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("channel", "mark"),
    )
    op.create_table(
        "notification_log",
        sa.Column("note_key", sa.Text(), nullable=False),
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("workflow_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("note_key"),
    )
    with op.batch_alter_table("notification_log", schema=None) as batch_op:
        batch_op.create_index("notification_log_created", ["created_at"], unique=False)
        batch_op.create_index("notification_log_workflow", ["workflow_id", "created_at"], unique=False)

    op.create_table(
        "outbox_messages",
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("args_sha256", sa.Text(), nullable=True),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("message", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("sent_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("idempotency_key"),
    )
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.create_index("outbox_messages_created", ["created_at"], unique=False)

    op.create_table(
        "tool_records",
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("tool", sa.Text(), nullable=False),
        sa.Column("record_id", sa.Text(), nullable=False),
        sa.Column("args_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key"),
    )
    with op.batch_alter_table("tool_records", schema=None) as batch_op:
        batch_op.create_index("tool_records_created", ["created_at"], unique=False)


def downgrade(schema: str | None = None) -> None:
    with op.batch_alter_table("tool_records", schema=None) as batch_op:
        batch_op.drop_index("tool_records_created")

    op.drop_table("tool_records")
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index("outbox_messages_created")

    op.drop_table("outbox_messages")
    with op.batch_alter_table("notification_log", schema=None) as batch_op:
        batch_op.drop_index("notification_log_workflow")
        batch_op.drop_index("notification_log_created")

    op.drop_table("notification_log")
    op.drop_table("delivery_marks")
