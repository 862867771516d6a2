"""intake: writing transaction id on tasks for cursor paging that never skips a late commit

Revision ID: 0002_intake
Revises: 0001
Create Date: 2026-11-29 16:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_intake"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

XID_DEFAULT = "(pg_current_xact_id()::text)::bigint"


def upgrade() -> None:
    op.add_column(
        "tasks",
        sa.Column("xid", sa.BigInteger(), server_default=sa.text(XID_DEFAULT), nullable=False),
        schema="intake",
    )
    op.create_index("ix_tasks_org_xid_seq", "tasks", ["organisation_id", "xid", "seq"], schema="intake")
    op.create_index("ix_tasks_xid_seq", "tasks", ["xid", "seq"], schema="intake")


def downgrade() -> None:
    op.drop_index("ix_tasks_xid_seq", table_name="tasks", schema="intake")
    op.drop_index("ix_tasks_org_xid_seq", table_name="tasks", schema="intake")
    op.drop_column("tasks", "xid", schema="intake")
