"""proof-of-delivery photos: what each upload stored, and its bytes when PostgreSQL is the store

Revision ID: 0017_photos
Revises: 0016_intake_register
Create Date: 2026-12-06 14:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_photos"
down_revision: str | None = "0016_intake_register"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "photos",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("leg_id", sa.UUID(), nullable=False),
        sa.Column("organisation_id", sa.UUID(), nullable=False),
        sa.Column("volunteer_id", sa.UUID(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("store", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["leg_id"], ["dispatch.legs.id"], name=op.f("fk_photos_leg_id_legs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_photos")),
        schema="dispatch",
    )
    op.create_index(op.f("ix_dispatch_photos_leg_id"), "photos", ["leg_id"], unique=False, schema="dispatch")
    op.create_table(
        "photo_blobs",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_photo_blobs")),
        schema="dispatch",
    )


def downgrade() -> None:
    op.drop_table("photo_blobs", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_photos_leg_id"), table_name="photos", schema="dispatch")
    op.drop_table("photos", schema="dispatch")
