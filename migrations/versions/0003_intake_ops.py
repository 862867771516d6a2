"""intake: a projection of volunteers for the ops map, and indexes for the dashboard's queries

Revision ID: 0003_intake_ops
Revises: 0002_intake
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_intake_ops"
down_revision: str | None = "0002_intake"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "volunteers",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organisation_id", sa.UUID(), nullable=True),
        sa.Column("name_masked", sa.Text(), nullable=True),
        sa.Column("vehicle", sa.Text(), nullable=True),
        sa.Column("on_duty", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("duty_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lat", sa.Double(), nullable=True),
        sa.Column("lon", sa.Double(), nullable=True),
        sa.Column("location_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volunteers")),
        schema="intake",
    )
    op.create_index(
        "ix_volunteers_on_duty",
        "volunteers",
        ["on_duty"],
        schema="intake",
        postgresql_where=sa.text("on_duty"),
    )
    op.create_index(
        "ix_legs_waiting",
        "legs",
        ["status"],
        schema="intake",
        postgresql_where=sa.text("status IN ('pending', 'offered')"),
    )
    op.create_index("ix_legs_updated_at", "legs", ["updated_at"], schema="intake")


def downgrade() -> None:
    op.drop_index("ix_legs_updated_at", table_name="legs", schema="intake")
    op.drop_index("ix_legs_waiting", table_name="legs", schema="intake")
    op.drop_index("ix_volunteers_on_duty", table_name="volunteers", schema="intake")
    op.drop_table("volunteers", schema="intake")
