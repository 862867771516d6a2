"""volunteer enrolment links, invite codes and vetting

An operator's one-time enrolment link turns into a device token on the volunteer's phone; an
organisation's invite code lets volunteers sign up themselves, pending until an operator vets them.
Links and codes are stored only as SHA-256 hashes. `vetting_status` is `approved` for every
volunteer registered before this revision, so nobody already sent out stops getting offers.

Revision ID: 0019_volunteer_enrolment
Revises: 0018_personal_data_erasure
Create Date: 2026-12-06 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision: str = "0019_volunteer_enrolment"
down_revision: str | None = "0018_personal_data_erasure"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "volunteers",
        sa.Column("vetting_status", sa.Text(), nullable=False, server_default=sa.text("'approved'")),
        schema="dispatch",
    )
    op.create_check_constraint(
        op.f("ck_volunteers_vetting_status_known"),
        "volunteers",
        "vetting_status IN ('pending', 'approved', 'rejected')",
        schema="dispatch",
    )
    op.create_table(
        "enrolment_links",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("organisation_id", UUID(as_uuid=True), nullable=False),
        sa.Column(
            "volunteer_id", UUID(as_uuid=True), sa.ForeignKey("dispatch.volunteers.id"), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
        sa.Column("device_token_id", UUID(as_uuid=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("token_hash", name=op.f("uq_enrolment_links_token_hash")),
        schema="dispatch",
    )
    op.create_index("ix_enrolment_links_volunteer", "enrolment_links", ["volunteer_id"], schema="dispatch")
    op.create_table(
        "invite_codes",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("code_hash", sa.Text(), nullable=False),
        sa.Column("organisation_id", UUID(as_uuid=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("code_hash", name=op.f("uq_invite_codes_code_hash")),
        schema="dispatch",
    )
    op.create_table(
        "vetting_records",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organisation_id", UUID(as_uuid=True), nullable=False),
        sa.Column(
            "volunteer_id", UUID(as_uuid=True), sa.ForeignKey("dispatch.volunteers.id"), nullable=False
        ),
        sa.Column("checked_by", sa.Text(), nullable=False),
        sa.Column("identity_checked", sa.Boolean(), nullable=False),
        sa.Column("insured_until", sa.Date()),
        sa.Column("training_done", sa.Boolean(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "decision IN ('approve', 'reject')", name=op.f("ck_vetting_records_vetting_decision_known")
        ),
        schema="dispatch",
    )
    op.create_index(
        "ix_vetting_records_volunteer", "vetting_records", ["volunteer_id", "at"], schema="dispatch"
    )


def downgrade() -> None:
    op.drop_table("vetting_records", schema="dispatch")
    op.drop_table("invite_codes", schema="dispatch")
    op.drop_table("enrolment_links", schema="dispatch")
    op.drop_constraint(op.f("ck_volunteers_vetting_status_known"), "volunteers", schema="dispatch")
    op.drop_column("volunteers", "vetting_status", schema="dispatch")
