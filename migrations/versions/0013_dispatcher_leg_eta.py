"""a leg in hand has pickup and drop-off estimates, and a leg escalates again on its own

Dispatcher: the estimates last published on each leg, and `leg_escalations` (one row per leg and
reason, its key deciding which replica raises it). Intake: the estimates and the latest escalation
on each leg of the read model. Notifier: a recipient message may be owed more than once per leg
and template (one "delayed" per slip), and "on the way" carries its minutes.

Revision ID: 0013_leg_eta
Revises: 0012_leg_decisions
Create Date: 2026-12-06 14:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_leg_eta"
down_revision: str | None = "0012_leg_decisions"
branch_labels: str | Sequence[str] | None = None
# It alters intake and notifier tables too: their own branches must be built first.
depends_on: str | Sequence[str] | None = ("0003_intake_ops", "0003_notifier_parked")


def upgrade() -> None:
    for column in ("pickup_eta", "dropoff_eta", "eta_at"):
        op.add_column("legs", sa.Column(column, sa.DateTime(timezone=True), nullable=True), schema="dispatch")
    op.add_column(
        "legs",
        sa.Column("eta_late", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        schema="dispatch",
    )
    op.add_column(
        "legs",
        sa.Column("eta_slips", sa.Integer(), server_default=sa.text("0"), nullable=False),
        schema="dispatch",
    )
    op.create_index(
        "ix_legs_live",
        "legs",
        ["status"],
        schema="dispatch",
        postgresql_where=sa.text("status IN ('pending', 'offered', 'assigned', 'picked_up')"),
    )
    op.create_table(
        "leg_escalations",
        sa.Column("leg_id", sa.UUID(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("leg_id", "reason", name="pk_leg_escalations"),
        schema="dispatch",
    )

    for column in ("pickup_eta", "dropoff_eta", "eta_updated_at", "escalated_at"):
        op.add_column("legs", sa.Column(column, sa.DateTime(timezone=True), nullable=True), schema="intake")
    op.add_column(
        "legs",
        sa.Column("eta_late", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        schema="intake",
    )
    op.add_column("legs", sa.Column("escalation_reason", sa.Text(), nullable=True), schema="intake")
    op.create_index(
        "ix_legs_escalated_at",
        "legs",
        ["escalated_at"],
        schema="intake",
        postgresql_where=sa.text("escalated_at IS NOT NULL"),
    )

    op.add_column(
        "recipient_messages",
        sa.Column("occasion", sa.Text(), server_default="", nullable=False),
        schema="notify",
    )
    op.add_column("recipient_messages", sa.Column("minutes", sa.Integer(), nullable=True), schema="notify")
    op.drop_constraint(
        "uq_recipient_messages_leg_template_channel", "recipient_messages", schema="notify", type_="unique"
    )
    op.create_unique_constraint(
        "uq_recipient_messages_leg_template_channel",
        "recipient_messages",
        ["leg_id", "template", "channel", "occasion"],
        schema="notify",
    )


def downgrade() -> None:
    op.drop_constraint(
        "uq_recipient_messages_leg_template_channel", "recipient_messages", schema="notify", type_="unique"
    )
    op.execute("DELETE FROM notify.recipient_messages WHERE occasion <> ''")
    op.create_unique_constraint(
        "uq_recipient_messages_leg_template_channel",
        "recipient_messages",
        ["leg_id", "template", "channel"],
        schema="notify",
    )
    op.drop_column("recipient_messages", "minutes", schema="notify")
    op.drop_column("recipient_messages", "occasion", schema="notify")
    op.drop_index("ix_legs_escalated_at", table_name="legs", schema="intake")
    for column in (
        "escalation_reason",
        "eta_late",
        "escalated_at",
        "eta_updated_at",
        "dropoff_eta",
        "pickup_eta",
    ):
        op.drop_column("legs", column, schema="intake")
    op.drop_table("leg_escalations", schema="dispatch")
    op.drop_index("ix_legs_live", table_name="legs", schema="dispatch")
    for column in ("eta_slips", "eta_late", "eta_at", "dropoff_eta", "pickup_eta"):
        op.drop_column("legs", column, schema="dispatch")
