"""initial schemas

Revision ID: 0001
Revises:
Create Date: 2026-11-29 16:13:01.125418
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


SCHEMAS = ("auth", "intake", "dispatch", "notify")
OUTBOX_SCHEMAS = ("intake", "dispatch", "notify")


def upgrade() -> None:
    for schema in SCHEMAS:
        op.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    op.execute("CREATE SEQUENCE intake.task_seq")
    op.create_table(
        "organisations",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organisations")),
        schema="auth",
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("organisation_id", sa.UUID(), nullable=True),
        sa.Column("volunteer_id", sa.UUID(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["auth.organisations.id"],
            name=op.f("fk_tokens_organisation_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_tokens_token_hash")),
        schema="auth",
    )
    op.create_index(
        op.f("ix_auth_tokens_volunteer_id"), "tokens", ["volunteer_id"], unique=False, schema="auth"
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("organisation_id", sa.UUID(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.Text(), nullable=False),
        sa.Column("task_id", sa.UUID(), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("organisation_id", "key", name=op.f("pk_idempotency_keys")),
        schema="intake",
    )
    op.create_index(
        op.f("ix_intake_idempotency_keys_created_at"),
        "idempotency_keys",
        ["created_at"],
        unique=False,
        schema="intake",
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_inbox")),
        schema="intake",
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        schema="intake",
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organisation_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("priority", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("request", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("transitions", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seq", sa.Integer(), server_default=sa.text("nextval('intake.task_seq')"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("seq", name=op.f("uq_tasks_seq")),
        schema="intake",
    )
    op.create_index("ix_tasks_org_seq", "tasks", ["organisation_id", "seq"], unique=False, schema="intake")
    op.create_table(
        "timeline",
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("task_id", sa.UUID(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("leg_id", sa.UUID(), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_timeline")),
        schema="intake",
    )
    op.create_index(
        op.f("ix_intake_timeline_task_id"), "timeline", ["task_id"], unique=False, schema="intake"
    )
    op.create_table(
        "legs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("task_id", sa.UUID(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("code_hash", sa.Text(), nullable=False),
        sa.Column("volunteer_id", sa.UUID(), nullable=True),
        sa.Column("volunteer_name", sa.Text(), nullable=True),
        sa.Column("transitions", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["intake.tasks.id"], name=op.f("fk_legs_task_id_tasks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legs")),
        sa.UniqueConstraint("task_id", "index", name=op.f("uq_legs_task_id")),
        schema="intake",
    )
    op.create_index(op.f("ix_intake_legs_task_id"), "legs", ["task_id"], unique=False, schema="intake")
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_inbox")),
        schema="dispatch",
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        schema="dispatch",
    )
    op.create_table(
        "rejections",
        sa.Column("leg_id", sa.UUID(), nullable=False),
        sa.Column("volunteer_id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("leg_id", "volunteer_id", name=op.f("pk_rejections")),
        schema="dispatch",
    )
    op.create_table(
        "volunteers",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organisation_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("languages", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("skills", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("vehicle", sa.Text(), nullable=False),
        sa.Column("capacity_kg", sa.Float(), nullable=False),
        sa.Column("insured", sa.Boolean(), nullable=False),
        sa.Column("max_active_legs", sa.Integer(), nullable=False),
        sa.Column("home_lat", sa.Float(), nullable=True),
        sa.Column("home_lon", sa.Float(), nullable=True),
        sa.Column("on_duty", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("duty_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rest_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("location_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("active_legs", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("legs_done_today", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "active_legs >= 0 AND active_legs <= max_active_legs",
            name=op.f("ck_volunteers_active_legs_within_limit"),
        ),
        sa.CheckConstraint("max_active_legs >= 1", name=op.f("ck_volunteers_max_active_legs_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volunteers")),
        schema="dispatch",
    )
    op.create_index(
        op.f("ix_dispatch_volunteers_organisation_id"),
        "volunteers",
        ["organisation_id"],
        unique=False,
        schema="dispatch",
    )
    op.create_table(
        "legs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("task_id", sa.UUID(), nullable=False),
        sa.Column("organisation_id", sa.UUID(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("priority", sa.Text(), nullable=False),
        sa.Column("pickup_lat", sa.Float(), nullable=False),
        sa.Column("pickup_lon", sa.Float(), nullable=False),
        sa.Column("dropoff_lat", sa.Float(), nullable=False),
        sa.Column("dropoff_lon", sa.Float(), nullable=False),
        sa.Column("vehicle", sa.Text(), nullable=True),
        sa.Column("weight_kg", sa.Float(), nullable=False),
        sa.Column("skills", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("languages", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("vulnerable", sa.Boolean(), nullable=False),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deliver_by", sa.DateTime(timezone=True), nullable=True),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("volunteer_id", sa.UUID(), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["volunteer_id"], ["dispatch.volunteers.id"], name=op.f("fk_legs_volunteer_id_volunteers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legs")),
        schema="dispatch",
    )
    op.create_index(op.f("ix_dispatch_legs_task_id"), "legs", ["task_id"], unique=False, schema="dispatch")
    op.create_index(
        "ix_legs_dispatchable",
        "legs",
        ["status"],
        unique=False,
        schema="dispatch",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_legs_volunteer",
        "legs",
        ["volunteer_id"],
        unique=False,
        schema="dispatch",
        postgresql_where=sa.text("volunteer_id IS NOT NULL"),
    )
    op.create_table(
        "offers",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("leg_id", sa.UUID(), nullable=False),
        sa.Column("volunteer_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("distance_m", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["leg_id"], ["dispatch.legs.id"], name=op.f("fk_offers_leg_id_legs")),
        sa.ForeignKeyConstraint(
            ["volunteer_id"], ["dispatch.volunteers.id"], name=op.f("fk_offers_volunteer_id_volunteers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offers")),
        schema="dispatch",
    )
    op.create_index(
        "ix_offers_live_expiry",
        "offers",
        ["expires_at"],
        unique=False,
        schema="dispatch",
        postgresql_where=sa.text("status = 'live'"),
    )
    op.create_index(
        "ix_offers_live_volunteer",
        "offers",
        ["volunteer_id"],
        unique=False,
        schema="dispatch",
        postgresql_where=sa.text("status = 'live'"),
    )
    op.create_index(
        "uq_offers_one_live_per_leg",
        "offers",
        ["leg_id"],
        unique=True,
        schema="dispatch",
        postgresql_where=sa.text("status = 'live'"),
    )
    op.create_table(
        "delivery_reports",
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("leg_id", sa.UUID(), nullable=False),
        sa.Column("task_id", sa.UUID(), nullable=False),
        sa.Column("volunteer_id", sa.UUID(), nullable=False),
        sa.Column("code_hash", sa.Text(), nullable=True),
        sa.Column("photo_sha256", sa.Text(), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_delivery_reports")),
        schema="notify",
    )
    op.create_index(
        op.f("ix_notify_delivery_reports_leg_id"),
        "delivery_reports",
        ["leg_id"],
        unique=False,
        schema="notify",
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_inbox")),
        schema="notify",
    )
    op.create_table(
        "legs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("task_id", sa.UUID(), nullable=False),
        sa.Column("code_hash", sa.Text(), nullable=False),
        sa.Column("no_contact", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Text(), server_default="open", nullable=False),
        sa.Column("failed_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("flagged", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legs")),
        schema="notify",
    )
    op.create_index(op.f("ix_notify_legs_task_id"), "legs", ["task_id"], unique=False, schema="notify")
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        schema="notify",
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organisation_id", sa.UUID(), nullable=False),
        sa.Column("cancelled", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        schema="notify",
    )
    # Relays wait on LISTEN <schema>_outbox; one NOTIFY per inserting statement wakes them at commit.
    for schema in OUTBOX_SCHEMAS:
        op.execute(
            f"""
            CREATE FUNCTION {schema}.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('{schema}_outbox', '');
                RETURN NULL;
            END $$
            """
        )
        op.execute(
            f"""
            CREATE TRIGGER outbox_inserted AFTER INSERT ON {schema}.outbox
                FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_outbox()
            """
        )


def downgrade() -> None:
    for schema in OUTBOX_SCHEMAS:
        op.execute(f"DROP FUNCTION IF EXISTS {schema}.notify_outbox() CASCADE")
    op.drop_table("tasks", schema="notify")
    op.drop_table("outbox", schema="notify")
    op.drop_index(op.f("ix_notify_legs_task_id"), table_name="legs", schema="notify")
    op.drop_table("legs", schema="notify")
    op.drop_table("inbox", schema="notify")
    op.drop_index(op.f("ix_notify_delivery_reports_leg_id"), table_name="delivery_reports", schema="notify")
    op.drop_table("delivery_reports", schema="notify")
    op.drop_index(
        "uq_offers_one_live_per_leg",
        table_name="offers",
        schema="dispatch",
        postgresql_where=sa.text("status = 'live'"),
    )
    op.drop_index(
        "ix_offers_live_volunteer",
        table_name="offers",
        schema="dispatch",
        postgresql_where=sa.text("status = 'live'"),
    )
    op.drop_index(
        "ix_offers_live_expiry",
        table_name="offers",
        schema="dispatch",
        postgresql_where=sa.text("status = 'live'"),
    )
    op.drop_table("offers", schema="dispatch")
    op.drop_index(
        "ix_legs_volunteer",
        table_name="legs",
        schema="dispatch",
        postgresql_where=sa.text("volunteer_id IS NOT NULL"),
    )
    op.drop_index(
        "ix_legs_dispatchable",
        table_name="legs",
        schema="dispatch",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index(op.f("ix_dispatch_legs_task_id"), table_name="legs", schema="dispatch")
    op.drop_table("legs", schema="dispatch")
    op.drop_index(op.f("ix_dispatch_volunteers_organisation_id"), table_name="volunteers", schema="dispatch")
    op.drop_table("volunteers", schema="dispatch")
    op.drop_table("rejections", schema="dispatch")
    op.drop_table("outbox", schema="dispatch")
    op.drop_table("inbox", schema="dispatch")
    op.drop_index(op.f("ix_intake_legs_task_id"), table_name="legs", schema="intake")
    op.drop_table("legs", schema="intake")
    op.drop_index(op.f("ix_intake_timeline_task_id"), table_name="timeline", schema="intake")
    op.drop_table("timeline", schema="intake")
    op.drop_index("ix_tasks_org_seq", table_name="tasks", schema="intake")
    op.drop_table("tasks", schema="intake")
    op.drop_table("outbox", schema="intake")
    op.drop_table("inbox", schema="intake")
    op.drop_index(
        op.f("ix_intake_idempotency_keys_created_at"), table_name="idempotency_keys", schema="intake"
    )
    op.drop_table("idempotency_keys", schema="intake")
    op.drop_index(op.f("ix_auth_tokens_volunteer_id"), table_name="tokens", schema="auth")
    op.drop_table("tokens", schema="auth")
    op.drop_table("organisations", schema="auth")
    op.execute("DROP SEQUENCE intake.task_seq")
    for schema in reversed(SCHEMAS):
        op.execute(f"DROP SCHEMA IF EXISTS {schema}")
