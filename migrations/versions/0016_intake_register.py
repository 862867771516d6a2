"""intake: the register of people served (sealed, searchable by keyed hashes), saved places, and the
geocoding cache

Revision ID: 0016_intake_register
Revises: 0015_staff_accounts
Create Date: 2026-12-06 14:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016_intake_register"
down_revision: str | None = "0015_staff_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    now = sa.text("now()")
    op.create_table(
        "recipients",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organisation_id", sa.UUID(), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("language", sa.Text(), nullable=False),
        sa.Column("vulnerable", sa.Boolean(), nullable=False),
        sa.Column("no_contact", sa.Boolean(), nullable=False),
        sa.Column("consent_given_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("phone_index", sa.Text(), nullable=True),
        sa.Column("email_index", sa.Text(), nullable=True),
        sa.Column("search_index", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("active_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recipients")),
        schema="intake",
    )
    op.create_index("ix_recipients_org_id", "recipients", ["organisation_id", "id"], schema="intake")
    op.create_index(
        "ix_recipients_org_phone", "recipients", ["organisation_id", "phone_index"], schema="intake"
    )
    op.create_index(
        "ix_recipients_org_email", "recipients", ["organisation_id", "email_index"], schema="intake"
    )
    op.create_index(
        "ix_recipients_search", "recipients", ["search_index"], schema="intake", postgresql_using="gin"
    )
    op.create_index("ix_recipients_active_at", "recipients", ["active_at"], schema="intake")
    op.create_table(
        "places",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organisation_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("lat", sa.Double(), nullable=False),
        sa.Column("lon", sa.Double(), nullable=False),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("contact_name", sa.Text(), nullable=True),
        sa.Column("contact_phone", sa.Text(), nullable=True),
        sa.Column("opening_hours", sa.Text(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_places")),
        schema="intake",
    )
    op.create_index("ix_places_org_id", "places", ["organisation_id", "id"], schema="intake")
    op.create_table(
        "geocode_cache",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("lat", sa.Double(), nullable=False),
        sa.Column("lon", sa.Double(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_geocode_cache")),
        schema="intake",
    )
    op.create_index("ix_intake_geocode_cache_created_at", "geocode_cache", ["created_at"], schema="intake")


def downgrade() -> None:
    op.drop_index("ix_intake_geocode_cache_created_at", table_name="geocode_cache", schema="intake")
    op.drop_table("geocode_cache", schema="intake")
    op.drop_index("ix_places_org_id", table_name="places", schema="intake")
    op.drop_table("places", schema="intake")
    for index in (
        "ix_recipients_active_at",
        "ix_recipients_search",
        "ix_recipients_org_email",
        "ix_recipients_org_phone",
        "ix_recipients_org_id",
    ):
        op.drop_index(index, table_name="recipients", schema="intake")
    op.drop_table("recipients", schema="intake")
