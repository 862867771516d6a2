"""outboxes keep published events for a while, so a broker that lost its log can be sent them again

A published row gets `published_at` instead of being deleted when the relay runs with a retention
(`OUTBOX_RETENTION_S`, set by `make run` for its in-memory broker). The relay claims only rows
not yet published, through a partial index of exactly those, so retained rows cost it nothing;
a second partial index serves the purge of rows past the retention.

Revision ID: 0010_outbox_retention
Revises: 0009_dispatcher_duty_periods
Create Date: 2026-12-06 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_outbox_retention"
down_revision: str | None = "0009_dispatcher_duty_periods"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTBOX_SCHEMAS = ("intake", "dispatch", "notify")


def upgrade() -> None:
    for schema in OUTBOX_SCHEMAS:
        op.add_column(
            "outbox", sa.Column("published_at", sa.DateTime(timezone=True), nullable=True), schema=schema
        )
        op.create_index(
            "ix_outbox_unpublished",
            "outbox",
            ["id"],
            unique=False,
            schema=schema,
            postgresql_where=sa.text("published_at IS NULL"),
        )
        op.create_index(
            "ix_outbox_published_at",
            "outbox",
            ["published_at"],
            unique=False,
            schema=schema,
            postgresql_where=sa.text("published_at IS NOT NULL"),
        )


def downgrade() -> None:
    for schema in OUTBOX_SCHEMAS:
        op.drop_index("ix_outbox_published_at", table_name="outbox", schema=schema)
        op.drop_index("ix_outbox_unpublished", table_name="outbox", schema=schema)
        # Rows already published were sent; without the column they would be sent again.
        op.execute(f"DELETE FROM {schema}.outbox WHERE published_at IS NOT NULL")  # noqa: S608
        op.drop_column("outbox", "published_at", schema=schema)
