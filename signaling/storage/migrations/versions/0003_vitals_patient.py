"""Monitor-grade vitals (issue 9): the patient a consultation is about, the numerics and
alarms the bedside measured (stored with the consultation), and the alarm limits it
reported in force.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-09
"""

import sqlalchemy as sa
from alembic import op

from signaling.storage.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _consultation() -> sa.Column[str]:
    return sa.Column(
        "consultation_id", sa.String(32), sa.ForeignKey("consultations.id"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "consultation_patients",
        sa.Column(
            "consultation_id", sa.String(32), sa.ForeignKey("consultations.id"), primary_key=True
        ),
        sa.Column("pseudonym", sa.String(64), nullable=False),
        sa.Column("birth_year", sa.Integer, nullable=True),
        sa.Column("age", sa.Integer, nullable=True),
        sa.Column("sex", sa.String(8), nullable=False),
        sa.Column("ward", sa.String(64), nullable=False),
        sa.Column("bed", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("allergies", sa.Text, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("name_romanised", sa.String(128), nullable=False),
    )
    op.create_table(
        "vital_series",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _consultation(),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("derived", sa.Boolean, nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("mdc", sa.Integer, nullable=True),
        sa.Column("refid", sa.String(64), nullable=True),
        sa.Column("loinc", sa.String(16), nullable=True),
        sa.UniqueConstraint("consultation_id", "device", "code", "derived"),
    )
    op.create_index("ix_vital_series_consultation_id", "vital_series", ["consultation_id"])
    op.create_table(
        "vital_numerics",
        sa.Column("series_id", sa.Integer, sa.ForeignKey("vital_series.id"), primary_key=True),
        sa.Column("second", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("device_time", sa.Float, nullable=True),
        sa.Column("quality", sa.String(256), nullable=False),
    )
    op.create_index("ix_vital_numerics_second", "vital_numerics", ["second"])
    op.create_table(
        "vital_alarms",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _consultation(),
        sa.Column("gateway_id", sa.Integer, nullable=False),
        sa.Column("alarm_id", sa.String(128), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("code", sa.String(64), nullable=True),
        sa.Column("condition", sa.String(64), nullable=False),
        sa.Column("text", sa.String(256), nullable=False),
        sa.Column("priority", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("ended", sa.Float, nullable=True),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("limit_value", sa.Float, nullable=True),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("acknowledged_by", sa.String(128), nullable=True),
        sa.Column("acknowledged_at", sa.Float, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("consultation_id", "gateway_id", "alarm_id"),
    )
    op.create_index("ix_vital_alarms_consultation_id", "vital_alarms", ["consultation_id"])
    op.create_table(
        "vital_alarm_limits",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _consultation(),
        sa.Column("gateway_id", sa.Integer, nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("changed_by", sa.String(128), nullable=True),
        sa.Column("limits", sa.Text, nullable=False),
        sa.UniqueConstraint("consultation_id", "gateway_id", "time"),
    )
    op.create_index(
        "ix_vital_alarm_limits_consultation_id", "vital_alarm_limits", ["consultation_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_vital_alarm_limits_consultation_id", "vital_alarm_limits")
    op.drop_table("vital_alarm_limits")
    op.drop_index("ix_vital_alarms_consultation_id", "vital_alarms")
    op.drop_table("vital_alarms")
    op.drop_index("ix_vital_numerics_second", "vital_numerics")
    op.drop_table("vital_numerics")
    op.drop_index("ix_vital_series_consultation_id", "vital_series")
    op.drop_table("vital_series")
    op.drop_table("consultation_patients")
