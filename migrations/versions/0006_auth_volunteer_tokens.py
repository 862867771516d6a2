"""dispatcher: volunteers can be deactivated, and legs remember that wrong codes flagged them

A deactivated volunteer's tokens are all revoked and they never go on duty again. A leg flagged by
the notifier (too many wrong confirmation codes) refuses delivery reports until an operator
resolves it.

Revision ID: 0006_auth_volunteer_tokens
Revises: 0005_dispatcher_roster
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_auth_volunteer_tokens"
down_revision: str | None = "0005_dispatcher_roster"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "volunteers",
        sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True),
        schema="dispatch",
    )
    op.add_column(
        "legs", sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=True), schema="dispatch"
    )


def downgrade() -> None:
    op.drop_column("legs", "flagged_at", schema="dispatch")
    op.drop_column("volunteers", "deactivated_at", schema="dispatch")
