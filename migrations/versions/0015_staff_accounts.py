"""auth: staff accounts with passwords and browser sessions, login throttling, and the audit trail

People (admin, operator, ops) belong to an organisation and set their password through a one-time
link. Browser sessions are rows, so ending one (logout, disabling a person) takes effect at once.
Failed logins are counted per account and per client address in `login_throttle`, shared by every
replica. API tokens name their owner: a person or a service. `audit` records who did what, by ids.

Revision ID: 0015_staff_accounts
Revises: 0013_leg_eta
Create Date: 2026-12-06 14:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015_staff_accounts"
down_revision: str | None = "0013_leg_eta"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organisation_id", sa.UUID(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organisation_id"], ["auth.organisations.id"], name="fk_people_organisation_id_organisations"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_people"),
        sa.UniqueConstraint("email", name="uq_people_email"),
        schema="auth",
    )
    op.create_index("ix_auth_people_organisation_id", "people", ["organisation_id"], schema="auth")
    op.create_table(
        "password_setups",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("person_id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"], ["auth.people.id"], name="fk_password_setups_person_id_people"
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_password_setups"),
        schema="auth",
    )
    op.create_index("ix_auth_password_setups_person_id", "password_setups", ["person_id"], schema="auth")
    op.create_table(
        "sessions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("person_id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["person_id"], ["auth.people.id"], name="fk_sessions_person_id_people"),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.UniqueConstraint("token_hash", name="uq_sessions_token_hash"),
        schema="auth",
    )
    op.create_index("ix_auth_sessions_person_id", "sessions", ["person_id"], schema="auth")
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_login_throttle"),
        schema="auth",
    )
    op.add_column("tokens", sa.Column("person_id", sa.UUID(), nullable=True), schema="auth")
    op.add_column("tokens", sa.Column("service_name", sa.Text(), nullable=True), schema="auth")
    op.create_foreign_key(
        "fk_tokens_person_id_people",
        "tokens",
        "people",
        ["person_id"],
        ["id"],
        source_schema="auth",
        referent_schema="auth",
    )
    op.create_index("ix_auth_tokens_person_id", "tokens", ["person_id"], schema="auth")
    op.create_table(
        "audit",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("organisation_id", sa.UUID(), nullable=True),
        sa.Column("actor_kind", sa.Text(), nullable=False),
        sa.Column("actor_id", sa.UUID(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("task_id", sa.UUID(), nullable=True),
        sa.Column("leg_id", sa.UUID(), nullable=True),
        sa.Column("volunteer_id", sa.UUID(), nullable=True),
        sa.Column("person_id", sa.UUID(), nullable=True),
        sa.Column(
            "detail",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
        schema="auth",
    )
    for column in ("at", "task_id", "volunteer_id", "person_id", "actor_id"):
        op.create_index(f"ix_auth_audit_{column}", "audit", [column], schema="auth")


def downgrade() -> None:
    op.drop_table("audit", schema="auth")
    op.drop_index("ix_auth_tokens_person_id", table_name="tokens", schema="auth")
    op.drop_constraint("fk_tokens_person_id_people", "tokens", schema="auth", type_="foreignkey")
    op.drop_column("tokens", "service_name", schema="auth")
    op.drop_column("tokens", "person_id", schema="auth")
    op.drop_table("login_throttle", schema="auth")
    op.drop_table("sessions", schema="auth")
    op.drop_table("password_setups", schema="auth")
    op.drop_table("people", schema="auth")
