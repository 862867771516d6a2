"""dispatcher: volunteers' welfare counters, so rest and daily caps are enforced

The shift clock carries over a short break off duty; a rest resets it. Duty hours and legs
delivered count per local day.

Revision ID: 0009_dispatcher_duty_periods
Revises: 0008_dispatcher_leg_priority
Create Date: 2026-12-06 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_dispatcher_duty_periods"
down_revision: str | None = "0008_dispatcher_leg_priority"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for column in (
        sa.Column("shift_duty_s", sa.Float(), server_default=sa.text("0"), nullable=False),
        sa.Column("off_duty_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duty_day", sa.Date(), nullable=True),
        sa.Column("duty_today_s", sa.Float(), server_default=sa.text("0"), nullable=False),
        sa.Column("legs_day", sa.Date(), nullable=True),
    ):
        op.add_column("volunteers", column, schema="dispatch")


def downgrade() -> None:
    for name in ("legs_day", "duty_today_s", "duty_day", "off_duty_at", "shift_duty_s"):
        op.drop_column("volunteers", name, schema="dispatch")
