"""tasks and legs remember when their personal data was erased

Intake, the dispatcher and the notifier each erase the names, phones, e-mails, notes and
addresses they hold of a task once it has ended and the retention (`PERSONAL_DATA_RETENTION_S`)
has passed, or at once when an admin erases a person on request. `erased_at` marks what is done,
so the jobs skip it; a partial index of the rows not yet erased keeps each job's search small.

Revision ID: 0018_personal_data_erasure
Revises: 0017_photos
Create Date: 2026-12-06 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_personal_data_erasure"
down_revision: str | None = "0017_photos"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (schema, table, the column a job orders its search by)
ERASABLE = (
    ("intake", "tasks", "updated_at"),
    ("dispatch", "legs", "updated_at"),
    ("notify", "tasks", "ended_at"),
)


def upgrade() -> None:
    # The notifier's tasks learn when they ended (completed or cancelled): its retention counts from then.
    op.add_column("tasks", sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True), schema="notify")
    for schema, table, column in ERASABLE:
        op.add_column(table, sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True), schema=schema)
        op.create_index(
            f"ix_{table}_not_erased",
            table,
            [column],
            unique=False,
            schema=schema,
            postgresql_where=sa.text("erased_at IS NULL"),
        )


def downgrade() -> None:
    for schema, table, _ in ERASABLE:
        op.drop_index(f"ix_{table}_not_erased", table_name=table, schema=schema)
        op.drop_column(table, "erased_at", schema=schema)
    op.drop_column("tasks", "ended_at", schema="notify")
