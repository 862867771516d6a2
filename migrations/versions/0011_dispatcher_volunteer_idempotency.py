"""a volunteer's action sent with an Idempotency-Key is remembered with its answer, for its retries

A leg also keeps when the volunteer said they picked it up and delivered it (`picked_up_at`,
`delivered_at`), which an app that was offline sends later than it happened.

Revision ID: 0011_volunteer_idempotency
Revises: 0010_outbox_retention
Create Date: 2026-12-06 13:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011_volunteer_idempotency"
down_revision: str | None = "0010_outbox_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for column in ("picked_up_at", "delivered_at"):
        op.add_column("legs", sa.Column(column, sa.DateTime(timezone=True), nullable=True), schema="dispatch")
    op.create_table(
        "volunteer_requests",
        sa.Column("volunteer_id", sa.UUID(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("volunteer_id", "key", name="pk_volunteer_requests"),
        schema="dispatch",
    )
    op.create_index(
        "ix_dispatch_volunteer_requests_created_at",
        "volunteer_requests",
        ["created_at"],
        unique=False,
        schema="dispatch",
    )


def downgrade() -> None:
    op.drop_index(
        "ix_dispatch_volunteer_requests_created_at", table_name="volunteer_requests", schema="dispatch"
    )
    op.drop_table("volunteer_requests", schema="dispatch")
    for column in ("delivered_at", "picked_up_at"):
        op.drop_column("legs", column, schema="dispatch")
