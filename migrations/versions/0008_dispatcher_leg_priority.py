"""dispatcher: matching rounds take pending legs by priority, vulnerable recipients first

A round takes a limited number of pending legs; it now takes them critical before urgent before
routine, vulnerable first among equals, then least recently considered, then oldest. This index
holds pending legs in exactly that order, so the round stops reading at its limit; it replaces the
rotation index, whose order (considered, then submitted) is now a tie-break within a rank.

Revision ID: 0008_dispatcher_leg_priority
Revises: 0007_dispatcher_insured_until
Create Date: 2026-12-06 12:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_dispatcher_leg_priority"
down_revision: str | None = "0007_dispatcher_insured_until"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As `tables.PRIORITY_RANK_SQL` was when written: a migration never changes with the code.
PRIORITY_RANK_SQL = "array_position(ARRAY['critical', 'urgent', 'routine'], priority)"


def upgrade() -> None:
    op.create_index(
        "ix_legs_pending_priority",
        "legs",
        [
            sa.text(PRIORITY_RANK_SQL),
            sa.text("vulnerable DESC"),
            sa.text("considered_at ASC NULLS FIRST"),
            sa.text("submitted_at"),
        ],
        schema="dispatch",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index("ix_legs_pending_rotation", table_name="legs", schema="dispatch")


def downgrade() -> None:
    op.create_index(
        "ix_legs_pending_rotation",
        "legs",
        ["considered_at", "submitted_at"],
        schema="dispatch",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index("ix_legs_pending_priority", table_name="legs", schema="dispatch")
