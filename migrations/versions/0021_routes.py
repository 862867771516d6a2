"""dispatch: routes (one volunteer's legs in order), which legs and offers belong to one

Revision ID: 0021_routes
Revises: 0020_intake_schedules
Create Date: 2026-12-06 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0021_routes"
down_revision: str | None = "0020_intake_schedules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    now = sa.text("now()")
    op.create_table(
        "routes",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organisation_id", sa.UUID(), nullable=False),
        sa.Column("volunteer_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("stops", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.ForeignKeyConstraint(
            ["volunteer_id"], ["dispatch.volunteers.id"], name=op.f("fk_routes_volunteer_id_volunteers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routes")),
        sa.CheckConstraint(
            "status IN ('offered', 'active', 'ended')", name=op.f("ck_routes_route_status_known")
        ),
        schema="dispatch",
    )
    op.create_index(
        "uq_routes_one_active_per_volunteer",
        "routes",
        ["volunteer_id"],
        unique=True,
        schema="dispatch",
        postgresql_where=sa.text("status = 'active'"),
    )
    op.add_column("legs", sa.Column("route_id", sa.UUID(), nullable=True), schema="dispatch")
    op.create_foreign_key(
        op.f("fk_legs_route_id_routes"),
        "legs",
        "routes",
        ["route_id"],
        ["id"],
        source_schema="dispatch",
        referent_schema="dispatch",
    )
    op.create_index(
        "ix_legs_route",
        "legs",
        ["route_id"],
        schema="dispatch",
        postgresql_where=sa.text("route_id IS NOT NULL"),
    )
    op.add_column("offers", sa.Column("route_id", sa.UUID(), nullable=True), schema="dispatch")
    op.add_column("offers", sa.Column("route_stops", postgresql.JSONB(), nullable=True), schema="dispatch")
    op.create_index(
        "ix_offers_live_route",
        "offers",
        ["route_id"],
        schema="dispatch",
        postgresql_where=sa.text("status = 'live' AND route_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_offers_live_route", table_name="offers", schema="dispatch")
    op.drop_column("offers", "route_stops", schema="dispatch")
    op.drop_column("offers", "route_id", schema="dispatch")
    op.drop_index("ix_legs_route", table_name="legs", schema="dispatch")
    op.drop_constraint(op.f("fk_legs_route_id_routes"), "legs", schema="dispatch", type_="foreignkey")
    op.drop_column("legs", "route_id", schema="dispatch")
    op.drop_index("uq_routes_one_active_per_volunteer", table_name="routes", schema="dispatch")
    op.drop_table("routes", schema="dispatch")
