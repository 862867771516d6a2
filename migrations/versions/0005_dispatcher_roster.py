"""dispatcher: each volunteer row remembers the transaction that last changed it

The matcher keeps the on-duty volunteers in memory and, each round, reads only the rows changed
since its last read: those whose `changed_xid` is not below the oldest transaction that was still
running then (a later commit of an older transaction is read again, never missed).

Revision ID: 0005_dispatcher_roster
Revises: 0004_dispatcher_rotation
Create Date: 2026-11-29 19:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_dispatcher_roster"
down_revision: str | None = "0004_dispatcher_rotation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT_XID = "(pg_current_xact_id()::text)::bigint"


def upgrade() -> None:
    op.add_column(
        "volunteers",
        sa.Column("changed_xid", sa.BigInteger(), server_default=sa.text(CURRENT_XID), nullable=False),
        schema="dispatch",
    )
    op.create_index("ix_dispatch_volunteers_changed_xid", "volunteers", ["changed_xid"], schema="dispatch")
    op.execute(
        f"""
        CREATE FUNCTION dispatch.volunteer_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.changed_xid := {CURRENT_XID};
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER volunteer_changed BEFORE UPDATE ON dispatch.volunteers
        FOR EACH ROW EXECUTE FUNCTION dispatch.volunteer_changed()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER volunteer_changed ON dispatch.volunteers")
    op.execute("DROP FUNCTION dispatch.volunteer_changed()")
    op.drop_index("ix_dispatch_volunteers_changed_xid", table_name="volunteers", schema="dispatch")
    op.drop_column("volunteers", "changed_xid", schema="dispatch")
