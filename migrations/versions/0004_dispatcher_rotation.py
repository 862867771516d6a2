"""dispatcher: when a pending leg was last considered, so matching rounds rotate through a backlog

Revision ID: 0004_dispatcher_rotation
Revises: 0002_dispatcher
Create Date: 2026-11-29 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_dispatcher_rotation"
down_revision: str | None = "0002_dispatcher"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "legs", sa.Column("considered_at", sa.DateTime(timezone=True), nullable=True), schema="dispatch"
    )
    op.create_index(
        "ix_legs_pending_rotation",
        "legs",
        ["considered_at", "submitted_at"],
        schema="dispatch",
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_legs_pending_rotation", table_name="legs", schema="dispatch")
    op.drop_column("legs", "considered_at", schema="dispatch")
