"""Initial schema: sites, accounts, sessions, consultations, members, audit chain.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from signaling.storage.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("mains_hz", sa.Integer, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("display_name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("site_code", sa.String(32), sa.ForeignKey("sites.code"), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "gateways",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("site_code", sa.String(32), sa.ForeignKey("sites.code"), nullable=False),
        sa.Column("key_hash", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("principal_kind", sa.String(16), nullable=False),
        sa.Column("principal_id", sa.Integer, nullable=False),
        sa.Column("source_addr", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("last_active_at", UTCDateTime, nullable=False),
        sa.Column("ended_at", UTCDateTime, nullable=True),
        sa.Column("end_reason", sa.String(32), nullable=True),
    )
    op.create_table(
        "consultations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("requesting_site", sa.String(32), sa.ForeignKey("sites.code"), nullable=False),
        sa.Column("consulting_site", sa.String(32), sa.ForeignKey("sites.code"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("consent_cross_border", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("accepted_at", UTCDateTime, nullable=True),
        sa.Column("ended_at", UTCDateTime, nullable=True),
    )
    op.create_index("ix_consultations_state", "consultations", ["state"])
    op.create_table(
        "consultation_members",
        sa.Column(
            "consultation_id",
            sa.String(32),
            sa.ForeignKey("consultations.id"),
            primary_key=True,
        ),
        sa.Column("principal_kind", sa.String(16), primary_key=True),
        sa.Column("principal_id", sa.Integer, primary_key=True),
        sa.Column("first_joined_at", UTCDateTime, nullable=False),
        sa.Column("last_joined_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.Integer, nullable=True),
        sa.Column("actor_name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("site", sa.String(32), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("consultation_id", sa.String(32), nullable=True),
        sa.Column("source_addr", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_events_action", "audit_events", ["action"])
    op.create_index("ix_audit_events_consultation_id", "audit_events", ["consultation_id"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "audit_head",
        "audit_events",
        "consultation_members",
        "consultations",
        "sessions",
        "gateways",
        "users",
        "sites",
    ):
        op.drop_table(table)
