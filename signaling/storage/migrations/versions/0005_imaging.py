"""Imaging (issue 13): the patient's consent to identified images crossing the border, on
the consultation, and the index of the DICOM instances stored with a consultation (the
files themselves are under the server's data directory).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from signaling.storage.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "consultations",
        sa.Column("imaging_consent", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "imaging_instances",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "consultation_id", sa.String(32), sa.ForeignKey("consultations.id"), nullable=False
        ),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("series_instance_uid", sa.String(64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(64), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("frames", sa.Integer, nullable=False),
        sa.Column("rows", sa.Integer, nullable=True),
        sa.Column("columns", sa.Integer, nullable=True),
        sa.Column("patient_name", sa.String(512), nullable=False),
        sa.Column("patient_id", sa.String(128), nullable=False),
        sa.Column("study_date", sa.String(8), nullable=False),
        sa.Column("study_time", sa.String(32), nullable=False),
        sa.Column("study_description", sa.String(128), nullable=False),
        sa.Column("accession_number", sa.String(32), nullable=False),
        sa.Column("series_number", sa.Integer, nullable=True),
        sa.Column("series_description", sa.String(128), nullable=False),
        sa.Column("instance_number", sa.Integer, nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("deidentified", sa.Boolean, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("stored_at", UTCDateTime, nullable=False),
        sa.Column("sender_kind", sa.String(16), nullable=False),
        sa.Column("sender_id", sa.Integer, nullable=False),
        sa.Column("sender_name", sa.String(128), nullable=False),
        sa.UniqueConstraint("consultation_id", "sop_instance_uid"),
    )
    op.create_index(
        "ix_imaging_instances_study",
        "imaging_instances",
        ["consultation_id", "study_instance_uid"],
    )


def downgrade() -> None:
    op.drop_index("ix_imaging_instances_study", "imaging_instances")
    op.drop_table("imaging_instances")
    with op.batch_alter_table("consultations") as batch:
        batch.drop_column("imaging_consent")
