"""dispatcher: a volunteer's insurance has an end date

`insured_until` is the last day (in the organisation's local time zone) the volunteer's insurance
covers; NULL with `insured` true is cover without an end date. `insured` stays: it says whether the
volunteer has declared cover at all, and clients that send or read only that field keep working.
A volunteer is sent out only while `insured` is true and `insured_until` is NULL or not yet past.

Revision ID: 0007_dispatcher_insured_until
Revises: 0006_auth_volunteer_tokens
Create Date: 2026-12-06 12:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_dispatcher_insured_until"
down_revision: str | None = "0006_auth_volunteer_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("volunteers", sa.Column("insured_until", sa.Date(), nullable=True), schema="dispatch")


def downgrade() -> None:
    op.drop_column("volunteers", "insured_until", schema="dispatch")
