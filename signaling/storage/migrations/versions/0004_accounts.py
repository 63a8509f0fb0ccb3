"""Accounts under attack (issue 10): the login attempts the rate limit counts, shared by
every server process; sessions indexed by their end, which every server process watches
for (a disabled account's sessions are ended by the ``telemed users`` command).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from signaling.storage.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account", sa.String(200), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
    )
    op.create_index("ix_login_attempts_account_at", "login_attempts", ["account", "at"])
    op.create_index("ix_login_attempts_source_at", "login_attempts", ["source", "at"])
    op.create_index("ix_login_attempts_at", "login_attempts", ["at"])
    op.create_index("ix_sessions_ended_at", "sessions", ["ended_at"])


def downgrade() -> None:
    op.drop_index("ix_sessions_ended_at", "sessions")
    op.drop_index("ix_login_attempts_at", "login_attempts")
    op.drop_index("ix_login_attempts_source_at", "login_attempts")
    op.drop_index("ix_login_attempts_account_at", "login_attempts")
    op.drop_table("login_attempts")
