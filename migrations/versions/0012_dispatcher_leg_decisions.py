"""a delivered leg may leave its volunteer's list unconfirmed; the note sent with a delivery is kept

The dispatcher stamps `released_at` on a delivered leg whose task was cancelled before the notifier
confirmed it; the notifier keeps the volunteer's `note` with each delivery report. (A leg handed back
after pickup waits in the new status `needs_decision`: statuses are text, no schema change.)

Revision ID: 0012_leg_decisions
Revises: 0011_volunteer_idempotency
Create Date: 2026-12-06 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_leg_decisions"
down_revision: str | None = "0011_volunteer_idempotency"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "legs", sa.Column("released_at", sa.DateTime(timezone=True), nullable=True), schema="dispatch"
    )
    op.add_column("delivery_reports", sa.Column("note", sa.Text(), nullable=True), schema="notify")


def downgrade() -> None:
    op.drop_column("delivery_reports", "note", schema="notify")
    op.drop_column("legs", "released_at", schema="dispatch")
