"""dispatch: a volunteer may ask for an SMS when a new offer waits; notify: messages to volunteers

Revision ID: 0022_offer_sms
Revises: 0021_routes
Create Date: 2026-12-06 18:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_offer_sms"
down_revision: str | None = "0021_routes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "volunteers",
        sa.Column("sms_on_offer", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        schema="dispatch",
    )
    op.add_column("volunteers", sa.Column("sms_language", sa.Text(), nullable=True), schema="dispatch")
    # A message to a volunteer rather than to the leg's recipient: their address sealed here (the
    # leg's recipient is not who is told), and who they are, for the per-volunteer rate limit.
    op.add_column(
        "recipient_messages", sa.Column("address_sealed", sa.Text(), nullable=True), schema="notify"
    )
    op.add_column("recipient_messages", sa.Column("volunteer_id", sa.UUID(), nullable=True), schema="notify")
    op.create_index(
        "ix_recipient_messages_volunteer",
        "recipient_messages",
        ["volunteer_id", "created_at"],
        schema="notify",
        postgresql_where=sa.text("volunteer_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_recipient_messages_volunteer", table_name="recipient_messages", schema="notify")
    op.drop_column("recipient_messages", "volunteer_id", schema="notify")
    op.drop_column("recipient_messages", "address_sealed", schema="notify")
    op.drop_column("volunteers", "sms_language", schema="dispatch")
    op.drop_column("volunteers", "sms_on_offer", schema="dispatch")
