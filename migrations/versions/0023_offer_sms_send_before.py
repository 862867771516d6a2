"""notify: a message worth sending only until a moment (an offer's SMS, until the offer closes)

Revision ID: 0023_offer_sms_send_before
Revises: 0022_offer_sms
Create Date: 2026-12-07 00:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023_offer_sms_send_before"
down_revision: str | None = "0022_offer_sms"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "recipient_messages",
        sa.Column("send_before", sa.DateTime(timezone=True), nullable=True),
        schema="notify",
    )


def downgrade() -> None:
    op.drop_column("recipient_messages", "send_before", schema="notify")
