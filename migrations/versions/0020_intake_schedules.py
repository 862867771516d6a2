"""intake: recurring deliveries (schedules, and each occurrence made into a task exactly once)

Revision ID: 0020_intake_schedules
Revises: 0019_volunteer_enrolment
Create Date: 2026-12-06 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0020_intake_schedules"
down_revision: str | None = "0019_volunteer_enrolment"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    now = sa.text("now()")
    op.create_table(
        "schedules",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organisation_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("rrule", sa.Text(), nullable=False),
        sa.Column("dtstart", sa.DateTime(timezone=False), nullable=False),
        sa.Column("time_zone", sa.Text(), nullable=False),
        sa.Column("task", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("skipped_dates", postgresql.ARRAY(sa.Date()), nullable=False),
        sa.Column("cursor_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_occurrence_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        schema="intake",
    )
    op.create_index("ix_schedules_org_id", "schedules", ["organisation_id", "id"], schema="intake")
    op.create_index(
        "ix_schedules_due",
        "schedules",
        ["next_occurrence_at"],
        schema="intake",
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "schedule_occurrences",
        sa.Column("schedule_id", sa.UUID(), nullable=False),
        sa.Column("occurrence_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("organisation_id", sa.UUID(), nullable=False),
        sa.Column("task_id", sa.UUID(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["intake.schedules.id"],
            name=op.f("fk_schedule_occurrences_schedule_id_schedules"),
        ),
        sa.PrimaryKeyConstraint("schedule_id", "occurrence_at", name=op.f("pk_schedule_occurrences")),
        schema="intake",
    )


def downgrade() -> None:
    op.drop_table("schedule_occurrences", schema="intake")
    op.drop_index("ix_schedules_due", table_name="schedules", schema="intake")
    op.drop_index("ix_schedules_org_id", table_name="schedules", schema="intake")
    op.drop_table("schedules", schema="intake")
