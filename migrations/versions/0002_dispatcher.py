"""dispatcher: escalations, volunteer listing index

Revision ID: 0002_dispatcher
Revises: 0001
Create Date: 2026-11-29 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_dispatcher"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "escalations",
        sa.Column("task_id", sa.UUID(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "escalated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_escalations")),
        schema="dispatch",
    )
    op.create_index(
        "ix_volunteers_listing",
        "volunteers",
        ["organisation_id", "created_at", "id"],
        unique=False,
        schema="dispatch",
    )
    op.create_index("ix_legs_organisation", "legs", ["organisation_id"], unique=False, schema="dispatch")


def downgrade() -> None:
    op.drop_index("ix_legs_organisation", table_name="legs", schema="dispatch")
    op.drop_index("ix_volunteers_listing", table_name="volunteers", schema="dispatch")
    op.drop_table("escalations", schema="dispatch")
