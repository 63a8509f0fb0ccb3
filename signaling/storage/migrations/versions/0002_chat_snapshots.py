"""The consultation's record: stored chat messages and bedside snapshots.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from signaling.storage.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chat_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "consultation_id", sa.String(32), sa.ForeignKey("consultations.id"), nullable=False
        ),
        sa.Column("sender_kind", sa.String(16), nullable=False),
        sa.Column("sender_id", sa.Integer, nullable=False),
        sa.Column("sender_name", sa.String(128), nullable=False),
        sa.Column("sender_site", sa.String(32), nullable=False),
        sa.Column("sender_peer", sa.String(64), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_chat_messages_consultation_id", "chat_messages", ["consultation_id"])
    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "consultation_id", sa.String(32), sa.ForeignKey("consultations.id"), nullable=False
        ),
        sa.Column("taken_at", UTCDateTime, nullable=False),
        sa.Column("taken_by_kind", sa.String(16), nullable=False),
        sa.Column("taken_by_id", sa.Integer, nullable=False),
        sa.Column("taken_by_name", sa.String(128), nullable=False),
        sa.Column("content_type", sa.String(32), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_snapshots_consultation_id", "snapshots", ["consultation_id"])


def downgrade() -> None:
    op.drop_index("ix_snapshots_consultation_id", "snapshots")
    op.drop_table("snapshots")
    op.drop_index("ix_chat_messages_consultation_id", "chat_messages")
    op.drop_table("chat_messages")
