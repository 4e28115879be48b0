"""Copy requests: a party's request, the head's decision, the export.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC = sa.String(27)


def upgrade() -> None:
    op.create_table(
        "copy_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, nullable=False),
        sa.Column("requester", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("requested_utc", UTC, nullable=False),
        sa.Column("recorded_by", sa.String(64), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("decided_utc", UTC, nullable=True),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decision_reason", sa.Text, nullable=False),
        sa.Column("omit", sa.Text, nullable=False),
        sa.Column("exported_utc", UTC, nullable=True),
        sa.Column("exported_by", sa.String(64), nullable=True),
        sa.Column("output_sha256", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_copy_requests"),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name="fk_copy_requests_case_id"),
    )
    op.create_index("ix_copy_requests_case_id", "copy_requests", ["case_id"])


def downgrade() -> None:
    op.drop_table("copy_requests")
