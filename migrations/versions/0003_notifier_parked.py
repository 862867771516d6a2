"""notifier: dispatch events that overtook their task, held until its `task.submitted` arrives

Revision ID: 0003_notifier_parked
Revises: 0002_notifier
Create Date: 2026-11-29 19:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_notifier_parked"
down_revision: str | None = "0002_notifier"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "parked_events",
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("task_id", sa.UUID(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_parked_events")),
        schema="notify",
    )
    op.create_index(op.f("ix_notify_parked_events_task_id"), "parked_events", ["task_id"], schema="notify")


def downgrade() -> None:
    op.drop_index(op.f("ix_notify_parked_events_task_id"), table_name="parked_events", schema="notify")
    op.drop_table("parked_events", schema="notify")
